package store

import "errors"

// ErrNotSaved means a write of the local state failed: nothing of the change was kept, memory
// is what is on disk; retrying is safe once the cause is fixed. The error wraps the cause too
// (errors.Is(err, syscall.ENOSPC) for a full disk).
var ErrNotSaved = errors.New("local state not saved")

// Errors of shared (remote) stores, such as the etcd store: the agent answers them with 503.
var (
	// ErrUnavailable means the store cannot be reached: nothing was stored, or (for a write
	// whose answer was lost) it is unknown whether it was; a retry is safe, writes are
	// idempotent.
	ErrUnavailable = errors.New("membership store unavailable")
	// ErrNotSeen means a write was stored but this node has not yet seen it come back through
	// its watch, so it cannot be applied here yet; it will be.
	ErrNotSeen = errors.New("stored but not yet seen by this node")
	// ErrConflict means a write lost the race against other writers too many times in a row.
	ErrConflict = errors.New("too many concurrent changes to the same entry")
)
