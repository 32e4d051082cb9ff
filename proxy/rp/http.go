package rp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// maxResponse bounds every response body read from the provider.
const maxResponse = 1 << 20

// NewHTTPClient builds the HTTP client for talking to the provider: the
// system roots plus the PEM bundle caFile (if any), a timeout on every
// request, no redirects followed, and response bodies capped at 1 MiB.
func NewHTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := CertPool(caFile, "ca_file")
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: limitTransport{t},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// limitTransport makes reading past maxResponse bytes of a body an error.
type limitTransport struct{ next http.RoundTripper }

// CloseIdleConnections closes the idle connections of the transport below.
func (t limitTransport) CloseIdleConnections() { closeIdle(t.next) }

// closeIdle closes rt's idle connections, when it keeps any.
func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponse}
	return resp, nil
}

var errBodyTooLarge = fmt.Errorf("rp: provider response larger than %d bytes", maxResponse)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// CertPool is the system roots plus the PEM bundle in caFile; key is the
// configuration key named in errors.
func CertPool(caFile, key string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("rp: %s: %w", key, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("rp: %s %s holds no PEM certificate", key, caFile)
	}
	return pool, nil
}
