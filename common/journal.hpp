// Log lines to the systemd journal with fields (SEPPO_JOB=, SEPPO_WORKER=, SEPPO_FUNCTION=...),
// through sd-journal: for the broker and the worker, which link libsystemd (libseppo never
// does). Without systemd, or when stderr is not the journal's stream, nothing changes.
#pragma once

namespace seppo::journal {

// Has common/log send lines with their fields to the journal when stderr is its stream.
void install();

}  // namespace seppo::journal
