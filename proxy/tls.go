package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate and key from files and reloads them
// when either file changes (cert-manager, Let's Encrypt renewals), without
// a restart. A file that cannot be loaded keeps the last good pair in
// service, with an error in the log.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// Every is how often, at most, the files are looked at again (on a
	// handshake). Default 10 s.
	Every time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time // the later of the two files' modification times
	checked time.Time
}

// NewCertReloader loads the pair once; an error here stops the start-up.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, Every: 10 * time.Second}
	mod, err := r.modTimes()
	if err != nil {
		return nil, err
	}
	if err := r.load(mod); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) modTimes() (time.Time, error) {
	var latest time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return time.Time{}, fmt.Errorf("proxy: tls: %w", err)
		}
		if fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	return latest, nil
}

func (r *CertReloader) load(mod time.Time) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("proxy: tls: %w", err)
	}
	r.cert, r.modTime = &cert, mod
	return nil
}

// GetCertificate is for tls.Config.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.Every {
		r.checked = now
		if mod, err := r.modTimes(); err != nil {
			r.log.Error("tls: certificate files unreadable; keeping the current certificate", "err", err)
		} else if !mod.Equal(r.modTime) {
			if err := r.load(mod); err != nil {
				r.log.Error("tls: new certificate not loaded; keeping the current one", "err", err)
			} else {
				r.log.Info("tls: certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// TLSConfig is a server configuration around the reloader: TLS 1.2 or
// later, HTTP/2 and HTTP/1.1.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
