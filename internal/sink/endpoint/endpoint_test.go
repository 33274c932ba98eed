package endpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsFromEnvAndFileNeverInErrors(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, h, err := (&Common{Auth: &Auth{BearerTokenFile: tok}}).Security()
	if err != nil || h["Authorization"] != "Bearer s3cret-token" {
		t.Fatalf("bearer from file: %v %v", h, err)
	}
	t.Setenv("MT_PW", "pw")
	_, h, err = (&Common{Auth: &Auth{Username: "u", PasswordEnv: "MT_PW", HeadersFromEnv: map[string]string{"X-Api-Key": "MT_PW"}}}).Security()
	if err != nil || h["Authorization"] != "Basic dTpwdw==" || h["X-Api-Key"] != "pw" {
		t.Fatalf("basic from env: %v %v", h, err)
	}
	_, _, err = (&Common{Auth: &Auth{Username: "u", PasswordEnv: "MT_UNSET_VAR"}}).Security()
	if err == nil || !strings.HasPrefix(err.Error(), "auth.password_env:") || strings.Contains(err.Error(), "pw") && !strings.Contains(err.Error(), "password_env") {
		t.Errorf("unset env: %v", err)
	}
}

func TestCommonValidateNamesFields(t *testing.T) {
	c := &Common{Timeout: -1, TLS: &TLS{CertFile: "a"}, Auth: &Auth{BearerTokenEnv: "A", PasswordEnv: "B"}}
	var got []string
	for _, e := range c.Validate() {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"timeout: must be >= 0", "tls: cert_file and key_file go together", "auth.username: required", "auth: bearer token and basic auth are exclusive"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
}
