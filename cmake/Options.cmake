# Build options, in one place (nng's NNGOptions habit).
option(FANOUT_WERROR "Treat warnings as errors" ON)
option(FANOUT_TESTS "Build unit tests and the test HTTP server" ON)
set(FANOUT_SANITIZER "none" CACHE STRING
    "Sanitizers: none | address,undefined | thread")
set_property(CACHE FANOUT_SANITIZER PROPERTY STRINGS
    none "address,undefined" thread)
# The packaging half of cmake/Install.cmake: man pages, completion, units,
# docs and CPack. The container image turns it off: it copies only the
# sources of the programs into its build (.dockerignore), and does not use
# cmake --install.
option(FANOUT_PACKAGING
  "Generate man pages and completion; install them, units and docs; CPack" ON)
# Install locations that GNUInstallDirs does not cover. Relative paths are
# under CMAKE_INSTALL_PREFIX. systemd reads units from both
# /usr/local/lib/systemd/system and /usr/lib/systemd/system. Debian's zsh
# looks in /usr/local/share/zsh/site-functions but, under /usr, only in
# vendor-completions (site-functions there is not in its $fpath).
set(FANOUT_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
    "Where the systemd units are installed")
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_zsh_dir share/zsh/vendor-completions)
else()
  set(_zsh_dir share/zsh/site-functions)
endif()
set(FANOUT_ZSH_COMPLETION_DIR ${_zsh_dir} CACHE STRING
    "Where the zsh completion functions are installed")
