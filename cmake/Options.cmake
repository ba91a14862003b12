# Build options, in one place (nng's NNGOptions habit).
option(FANOUT_WERROR "Treat warnings as errors" ON)
option(FANOUT_TESTS "Build unit tests and the test HTTP server" ON)
set(FANOUT_SANITIZER "none" CACHE STRING
    "Sanitizers: none | address,undefined | thread")
set_property(CACHE FANOUT_SANITIZER PROPERTY STRINGS
    none "address,undefined" thread)
