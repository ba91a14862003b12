# One sanitizer knob for everything we build (nng CheckSanitizer habit).
if(NOT FANOUT_SANITIZER STREQUAL "none")
  set(_san -fsanitize=${FANOUT_SANITIZER} -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
  add_compile_options(${_san})
  add_link_options(${_san})
endif()
