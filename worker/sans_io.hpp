// Read before every source of the worker's rules library (worker/meson.build, `-include`): the
// rules have no socket, so ZeroMQ's names are poisoned there. A source that includes <zmq.h> or
// <zmq.hpp>, even through another header, then fails to build with "attempt to use poisoned"
// (issue 27: the boundary is enforced, not only intended).
#pragma once

#pragma GCC poison zmq_ctx_new zmq_socket zmq_msg_init zmq_send zmq_recv zmq_poll
