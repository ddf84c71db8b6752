// The queues' statistics in memory shared between pvback-blk's control part (which writes the
// statistics file) and the data-plane process (whose queue threads count): plane/shared_stats.hpp.
#pragma once
#include "blkback/stats.hpp"
#include "plane/shared_stats.hpp"

namespace pvback::blkback {

using SharedQueueStats = ::pvback::plane::SharedStats<QueueStats>;
inline constexpr const char* kSharedStatsName = "pvback-blk-stats";

}  // namespace pvback::blkback
