/* The binary interface between seppo-worker and a module (a shared object). Plain C so that a
 * module built with another compiler, standard library or msgpack version still loads: only
 * msgpack bytes cross the boundary. Modules written in C++ use seppo/module.hpp instead of this. */
#ifndef SEPPO_MODULE_ABI_H
#define SEPPO_MODULE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SEPPO_MODULE_ABI_VERSION 1u
#define SEPPO_MODULE_ENTRY "seppo_module_v1_entry"

/* Where a function writes its output: call write once or more; bytes are appended. */
typedef struct seppo_sink {
  void* context;
  void (*write)(void* context, const char* data, size_t size);
} seppo_sink;

/* Runs the function over one chunk.
 * input: a msgpack array of N arguments (untrusted bytes).
 * On success returns 0 and writes a msgpack array of N entries, each [0, result] or [1, message].
 * On a failure of the whole chunk (input not an array, say) returns non-zero and writes the
 * message as plain UTF-8 text. Must not throw, and must not keep pointers into input. */
typedef int (*seppo_call_chunk)(const char* input, size_t size, seppo_sink* output);

typedef struct seppo_function_v1 {
  const char* name;      /* the function's name within its module, e.g. "hello_world" */
  const char* signature; /* human-readable, e.g. "(number) -> string"; for status and errors */
  seppo_call_chunk call_chunk;
} seppo_function_v1;

typedef struct seppo_module_v1 {
  uint32_t abi_version; /* SEPPO_MODULE_ABI_VERSION */
  size_t function_count;
  const seppo_function_v1* functions;
} seppo_module_v1;

/* The one symbol a module exports, named by SEPPO_MODULE_ENTRY. */
typedef const seppo_module_v1* (*seppo_module_entry)(void);

#ifdef __cplusplus
}
#endif

#endif
