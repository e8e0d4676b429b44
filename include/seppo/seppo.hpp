// seppo: simple embarrassingly parallel. map_parallel over processes on many computers.
#pragma once

#include "seppo/client.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"
#include "seppo/local_cluster.hpp"
#include "seppo/version.hpp"
