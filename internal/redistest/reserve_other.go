//go:build !unix

package redistest

// reserve guards nothing across processes where flock is missing; the listen
// checks in FreePort still hold.
func reserve(int) bool { return true }
