/*
 * dashboard.h - the dashboard page served at / on --metrics: one
 * self-contained HTML file (inline CSS and script, nothing fetched from
 * elsewhere) that reads /history once and polls /status every second.
 * master/dashboard.html is built into the program by cmake/EmbedFile.cmake.
 */
#ifndef FANOUT_DASHBOARD_H
#define FANOUT_DASHBOARD_H

#include <stddef.h>

/* The page's bytes, NUL-terminated; dashboard_html_len excludes the NUL. */
extern const unsigned char dashboard_html[];
extern const size_t dashboard_html_len;

#endif
