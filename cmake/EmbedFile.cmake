# Turns a file into a C source holding its bytes, so a program carries the
# file (the dashboard page) without a new build dependency such as xxd.
#   cmake -DINPUT=page.html -DOUTPUT=page.c -DNAME=page_html -P EmbedFile.cmake
# defines const unsigned char NAME[] (the bytes and a terminating NUL) and
# const size_t NAME_len (the bytes, without the NUL).
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
# Twenty bytes a line: 0x3c,0x21,...
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){20})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from ${INPUT} by cmake/EmbedFile.cmake; do not edit. */\n"
  "#include <stddef.h>\n"
  "extern const unsigned char ${NAME}[];\nextern const size_t ${NAME}_len;\n"
  "const unsigned char ${NAME}[] = {\n    ${bytes}0x00};\n"
  "const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
