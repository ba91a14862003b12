# Warnings for our own code (curl's PickyWarnings habit). FANOUT_WERROR turns
# them into errors; it is ON by default and in CI.
set(FANOUT_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
    -Wno-unused-parameter)
if(FANOUT_WERROR)
  list(APPEND FANOUT_WARNINGS -Werror)
endif()
