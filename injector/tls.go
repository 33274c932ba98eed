package injector

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certReloader serves the key pair in two files and re-reads them when
// either's modification time or size changes, so a certificate rotated by
// cert-manager (or a re-mounted Secret) is picked up without a restart.
// A broken new pair is logged and the last good one kept.
type certReloader struct {
	certFile, keyFile string
	onLoad            func(err error)
	// minCheck spaces the stat calls: handshakes are frequent, rotations rare.
	minCheck time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
	checked   time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// newCertReloader loads the pair once; a failure here is a start-up error.
func newCertReloader(certFile, keyFile string, onLoad func(error)) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, onLoad: onLoad, minCheck: time.Second}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) reload() error {
	cs, err1 := stamp(r.certFile)
	ks, err2 := stamp(r.keyFile)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("tls: stat: %v %v", err1, err2)
	}
	if r.cert != nil && cs == r.certStamp && ks == r.keyStamp {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if r.onLoad != nil {
		r.onLoad(err)
	}
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certStamp, r.keyStamp = &pair, cs, ks
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.minCheck {
		r.checked = now
		_ = r.reload() // keep serving the last good pair; onLoad reported the error
	}
	return r.cert, nil
}
