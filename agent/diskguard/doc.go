// Package diskguard keeps the agent's disks from filling up: it reads the
// free space of the filesystem holding a path (statfs), evicts the least
// recently used entries of the venv and vcs caches while that space is below
// agent.venvs_cache.free_space_threshold_gb, reports when it is below the
// hard floor agent.disk_min_free_gb (the daemon then takes no task and says
// so in STATUS=), and removes a task's build directory after the task, even
// one with read-only directories in it.
//
// Cache layout (both caches, see agent/venv/cache.go and agent/repo): each
// entry is a directory <cache>/<name> (names starting with "." are
// temporary) guarded by the flock(2) lock file <cache>/<name>.lock, which
// whoever reads or writes the entry holds. Eviction takes that lock without
// waiting and skips the entry when someone holds it, so an entry in use is
// never evicted; it then moves the entry into a ".evict-*" directory and
// removes that, as the venv cache's own max_entries eviction does. An
// entry's last use is the modification time of its directory: the caches
// set it (os.Chtimes) each time they serve the entry.
//
// It must not: wait for a cache lock, follow symlinks out of a tree it
// removes, or remove anything outside the cache directories and the task
// directory it is given.
package diskguard
