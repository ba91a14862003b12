# Script mode (cmake -P), run by the build for each program (cmake/Install.cmake):
#
#   cmake -DPROGRAM=path/to/fanout-master -DNAME=fanout-master \
#         -DTAIL=docs/man/fanout-master.tail -DOUT=build/generated \
#         -P cmake/Generated.cmake
#
# writes OUT/man/NAME.1 (PROGRAM --help-man followed by TAIL, the sections
# the option table cannot give), OUT/bash/NAME and OUT/zsh/_NAME (PROGRAM
# --help-completion bash|zsh). Everything about the options comes from the
# program's own table (common/options.c), so the installed pages and
# completions cannot drift from --help.
foreach(v PROGRAM NAME TAIL OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "Generated.cmake: -D${v}= is required")
  endif()
endforeach()

# run(VAR ARGS...): PROGRAM's standard output for ARGS, or a fatal error.
function(run var)
  execute_process(COMMAND ${PROGRAM} ${ARGN}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR out STREQUAL "")
    message(FATAL_ERROR "${PROGRAM} ${ARGN} failed (${rc}): ${err}")
  endif()
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

run(man --help-man)
file(READ ${TAIL} tail)
run(bash --help-completion bash)
run(zsh --help-completion zsh)
file(WRITE ${OUT}/man/${NAME}.1 "${man}${tail}")
file(WRITE ${OUT}/bash/${NAME} "${bash}")
file(WRITE ${OUT}/zsh/_${NAME} "${zsh}")
