package authelia

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The digest of Authelia's own example (../shared/authelia-4.39-example.yml),
// made by `authelia crypto hash generate pbkdf2 --variant sha512`.
const (
	exampleSecret = "memos-proxy-secret-68e76d72786b502d5370225db95f91d5"
	exampleDigest = "$pbkdf2-sha512$310000$P7Fp4zpu52KeJdS.3ZUlDg$iiIuHuJnIBlxFHQk02fopS3eGlj3wyv.7sfqjCa3DXwGCsKWhjf12LkFgj14fBxWdYsduWDhDF36SdIpz4bKSQ"
)

func TestDigestMatchesAutheliasOwn(t *testing.T) {
	if !Matches(exampleDigest, exampleSecret) {
		t.Fatal("Authelia's own digest does not match its secret")
	}
	if Matches(exampleDigest, exampleSecret+"x") {
		t.Fatal("a wrong secret matches")
	}
	d, err := Digest(exampleSecret)
	if err != nil || !Matches(d, exampleSecret) || !strings.HasPrefix(d, "$pbkdf2-sha512$310000$") {
		t.Fatalf("Digest: %q %v", d, err)
	}
	for _, bad := range []string{"", "$pbkdf2-sha512$0$a$b", "$pbkdf2-sha256$310000$P7Fp4zpu52KeJdS.3ZUlDg$x", "$pbkdf2-sha512$310000$!!$x"} {
		if Matches(bad, exampleSecret) {
			t.Errorf("%q matches", bad)
		}
	}
}

// TestAutheliaAcceptsTheDigest: the real Authelia confirms a digest the
// proxy made (its validate command exits 0 either way: read its words).
func TestAutheliaAcceptsTheDigest(t *testing.T) {
	bin := os.Getenv("AUTHELIA_BIN")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AUTHELIA_BIN is not set (run eval \"$(../shared/peers/unpack)\")")
		}
		t.Skip("no AUTHELIA_BIN")
	}
	d, err := Digest("a-secret-of-the-proxy-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		password, want string
	}{{"a-secret-of-the-proxy-0123456789abcdef", "The password matches the digest."}, {"another", "The password does not match the digest."}} {
		out, err := exec.Command(bin, "crypto", "hash", "validate", "--password", tc.password, "--", d).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("authelia crypto hash validate (%s): %v %s", tc.password, err, out)
		}
	}
}
