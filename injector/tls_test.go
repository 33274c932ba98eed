package injector

import (
	"os"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/test/harness"
)

func TestCertReloaderPicksUpRotationAndKeepsLastGood(t *testing.T) {
	ca := harness.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, "first", "127.0.0.1").Write(t, dir, "tls")
	var loads, failures int
	r, err := newCertReloader(certFile, keyFile, func(err error) {
		if err != nil {
			failures++
		} else {
			loads++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.minCheck = 0
	cn := func() string {
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leaf != nil {
			return c.Leaf.Subject.CommonName
		}
		t.Fatal("no leaf")
		return ""
	}
	if got := cn(); got != "first" {
		t.Fatalf("cn %s", got)
	}
	touch := func() {
		future := time.Now().Add(time.Duration(loads+failures+1) * time.Minute)
		os.Chtimes(certFile, future, future)
		os.Chtimes(keyFile, future, future)
	}
	ca.Issue(t, "second", "127.0.0.1").Write(t, dir, "tls")
	touch()
	if got := cn(); got != "second" {
		t.Fatalf("after rotation cn %s", got)
	}
	// A half-written pair (new cert, old key) is refused; the last good
	// pair keeps being served.
	other := ca.Issue(t, "third", "127.0.0.1")
	os.WriteFile(certFile, other.CertPEM, 0o600)
	touch()
	if got := cn(); got != "second" || failures != 1 {
		t.Fatalf("cn %s failures %d", got, failures)
	}
	if _, err := newCertReloader(certFile+".missing", keyFile, nil); err == nil {
		t.Fatal("missing files accepted at start")
	}
}
