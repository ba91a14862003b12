# What `cmake --install` puts where, and the .deb CPack makes of it
# (`make deb`). Included by the top CMakeLists.txt after the programs. With
# -DFANOUT_PACKAGING=OFF only the programs are installed.
#
#   bin/                          the four programs
#   share/man/man1/               fanout-*.1, generated from the option tables
#   share/bash-completion/completions/, share/zsh/...   generated completion
#   lib/systemd/system/           units, with this prefix's bin/ in ExecStart
#   share/doc/fanout/             README, CHANGELOG, errors, LICENSE
#   share/fanout/examples/        items.jsonl
include(GNUInstallDirs)

set(FANOUT_PROGRAMS fanout-master fanout-worker fanout-ctl fanout-keygen)
install(TARGETS ${FANOUT_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(NOT FANOUT_PACKAGING)
  return()
endif()

# Man pages and completion scripts: each program prints its own with
# --help-man and --help-completion bash|zsh (common/options.c), from the
# table that also drives its --help; cmake/Generated.cmake adds the
# hand-written sections of docs/man/NAME.tail. A cross build cannot run the
# programs, so it installs neither.
set(_gen ${CMAKE_BINARY_DIR}/generated)
if(NOT CMAKE_CROSSCOMPILING)
  set(_outputs)
  foreach(p ${FANOUT_PROGRAMS})
    set(_o ${_gen}/man/${p}.1 ${_gen}/bash/${p} ${_gen}/zsh/_${p})
    add_custom_command(OUTPUT ${_o}
      COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:${p}> -DNAME=${p}
              -DTAIL=${CMAKE_SOURCE_DIR}/docs/man/${p}.tail -DOUT=${_gen}
              -P ${CMAKE_SOURCE_DIR}/cmake/Generated.cmake
      DEPENDS ${p} ${CMAKE_SOURCE_DIR}/docs/man/${p}.tail
              ${CMAKE_SOURCE_DIR}/cmake/Generated.cmake
      COMMENT "Generating the man page and completion of ${p}"
      VERBATIM)
    list(APPEND _outputs ${_o})
    install(FILES ${_gen}/man/${p}.1
      DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
    install(FILES ${_gen}/bash/${p}
      DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions)
    install(FILES ${_gen}/zsh/_${p}
      DESTINATION ${FANOUT_ZSH_COMPLETION_DIR})
  endforeach()
  add_custom_target(fanout-docs ALL DEPENDS ${_outputs})
endif()

# systemd units, with ExecStart= naming the binaries where this prefix
# installs them (/usr/local/bin/fanout-master, or /usr/bin/ in the .deb).
foreach(u fanout-master.service fanout-worker.service fanout-worker@.service)
  configure_file(${CMAKE_SOURCE_DIR}/deploy/systemd/${u}.in
    ${_gen}/systemd/${u} @ONLY)
  install(FILES ${_gen}/systemd/${u} DESTINATION ${FANOUT_SYSTEMD_UNIT_DIR})
endforeach()

install(FILES README.md CHANGELOG.md LICENSE docs/errors.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Debian's policy wants the licence as share/doc/PACKAGE/copyright (and
# slim images keep only that file of share/doc).
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)
install(FILES examples/items.jsonl
  DESTINATION ${CMAKE_INSTALL_DATADIR}/fanout/examples)

# The .deb: `make deb` configures a build with CMAKE_INSTALL_PREFIX=/usr
# and runs `cpack -G DEB`. The package installs under the prefix the build
# was configured with, so the units' ExecStart= is always right.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fanout)
set(CPACK_PACKAGE_VENDOR "the fanout authors")
set(CPACK_PACKAGE_CONTACT
  "the fanout authors <maintainers@users.noreply.b-seed-1f734352.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "rate-limited HTTP fan-out of a backlog, across workers and hosts")
# The summary above is the Description's first line; this is the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "fanout pushes a large backlog of work items (a JSONL file, stdin, a Redis
stream or an Azure Storage queue) through an external HTTP API with strict
rate and concurrency limits: as fast as the limits allow and never faster,
across as many worker processes and hosts as are started, with an
exactly-once, crash-safe record of every item's outcome.
.
This package holds fanout-master, fanout-worker, fanout-ctl and
fanout-keygen, their man pages and shell completion, and systemd units.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: from the shared libraries the programs link (dpkg-shlibdeps,
# which reads the local dpkg database; no network), plus what postinst runs.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/deploy/debian/postinst
  ${CMAKE_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
