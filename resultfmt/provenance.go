package resultfmt

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
)

// Commit returns the source revision a run was made from: the build's VCS
// stamp, else git's HEAD of dir, either with "-dirty" when the tree had
// changes; "unknown" when neither is available.
func Commit(dir string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}

// ThisHost describes the machine running now; workers is the run's
// parallelism (0: GOMAXPROCS).
func ThisHost(workers int) Host {
	h, _ := os.Hostname()
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return Host{Hostname: h, OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Workers: workers}
}
