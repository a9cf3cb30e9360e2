package jpkisim

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireOpenSSL returns the path of the real openssl binary that interop
// tests use to make fixtures. When it is absent the test is skipped, unless
// WATASHI_REQUIRE_OPENSSL is set (as .ci/run does), in which case it fails:
// CI must never pass by skipping the interop suite.
func RequireOpenSSL(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("openssl")
	if err == nil {
		return p
	}
	if v := os.Getenv("WATASHI_REQUIRE_OPENSSL"); v != "" && v != "0" && !strings.EqualFold(v, "false") {
		tb.Fatalf("openssl not found and WATASHI_REQUIRE_OPENSSL is set: %v", err)
	}
	tb.Skip("openssl not installed (set WATASHI_REQUIRE_OPENSSL=1 to make this fatal)")
	return ""
}
