// What libseppo exports: it is built with hidden visibility, so only declarations marked
// SEPPO_API are visible to programs; everything else (wire, curve, log, the embedded broker and
// worker) stays inside the library. Marking a class exports its members, typeinfo and vtable,
// so exceptions thrown in the library are caught by type in the program.
#pragma once

#if __cplusplus < 202002L
#error "seppo's headers need C++20 or newer: compile with -std=c++20 (or -std=c++23)"
#endif

#define SEPPO_API __attribute__((visibility("default")))
// For what a SEPPO_API class declares but keeps to the library (its Impl).
#define SEPPO_HIDDEN __attribute__((visibility("hidden")))
