package chart

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestImage runs the image builder (`make image`, build/image) with a push
// to a registry (go-containerregistry's, in process, over 127.0.0.1), pulls
// both back, runs the image's binary, and checks that the chart rendered
// with the values the builder wrote pins exactly the pushed filter.
func TestImage(t *testing.T) {
	root := harness.RepoRoot(t)
	dir := t.TempDir()
	bin := meshtrailBinary(t)
	wasm := filepath.Join(dir, "meshtrail.wasm")
	build := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", wasm, "./wasm")
	build.Dir = root
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the filter: %v\n%s", err, out)
	}
	wasmBytes, _ := os.ReadFile(wasm)
	wasmSum := sha256.Sum256(wasmBytes)

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	prefix := host + "/meshtrail"
	values := filepath.Join(dir, "wasmplugin-values.yaml")
	builder := filepath.Join(dir, "image-builder")
	b := exec.Command("go", "build", "-o", builder, "./build/image")
	b.Dir = root
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build build/image: %v\n%s", err, out)
	}
	runBuilder := func(layout string, extra ...string) {
		t.Helper()
		args := append([]string{"--binary", bin, "--wasm", wasm, "--version", "v0.1.0-test", "--layout", layout}, extra...)
		cmd := exec.Command(builder, args...)
		cmd.Env = append(os.Environ(), "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("image builder: %v\n%s", err, out)
		}
	}
	runBuilder(filepath.Join(dir, "oci"), "--push", prefix, "--insecure", "--values-out", values)
	digestFile := func(n string) string {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	imageDigest, wasmDigest := digestFile("meshtrail-image.digest"), digestFile("meshtrail-wasm.digest")

	// The same inputs give the same digests.
	runBuilder(filepath.Join(dir, "oci2"))
	if imageDigest != digestFile("meshtrail-image.digest") || wasmDigest != digestFile("meshtrail-wasm.digest") {
		t.Errorf("a second build gave other digests: not reproducible")
	}

	t.Run("image", func(t *testing.T) {
		img := pull(t, prefix+"/meshtrail:v0.1.0-test")
		if d, _ := img.Digest(); d.String() != imageDigest {
			t.Errorf("pulled image digest %s, built %s", d, imageDigest)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != "65532:65532" || cfg.OS != "linux" {
			t.Errorf("image user %q os %q: want non-root 65532:65532 on linux", cfg.Config.User, cfg.OS)
		}
		layers, _ := img.Layers()
		if len(layers) != 1 {
			t.Errorf("%d layers: want the binary on an empty base", len(layers))
		}
		files := untar(t, mutate.Extract(img))
		got, ok := files["usr/local/bin/meshtrail"]
		if !ok || len(files["etc/ssl/certs/ca-certificates.crt"]) == 0 {
			t.Fatalf("image files %v", keys(files))
		}
		exe := filepath.Join(t.TempDir(), "meshtrail")
		os.WriteFile(exe, got, 0o755)
		out, err := exec.Command(exe, append(cfg.Config.Entrypoint[1:], "--help")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Fatalf("the image's meshtrail --help: %v\n%s", err, out)
		}
		if cfg.Config.Entrypoint[0] != "/usr/local/bin/meshtrail" {
			t.Errorf("entrypoint %v", cfg.Config.Entrypoint)
		}
	})

	t.Run("wasm artifact", func(t *testing.T) {
		art := pull(t, prefix+"/meshtrail-wasm:v0.1.0-test")
		d, _ := art.Digest()
		if d.String() != wasmDigest {
			t.Errorf("pulled artifact digest %s, built %s", d, wasmDigest)
		}
		// What Istio's agent reads (istio pkg/wasm extractOCIStandardImage):
		// the last layer, OCI tar+gzip, holding plugin.wasm.
		layers, _ := art.Layers()
		mt, _ := layers[len(layers)-1].MediaType()
		if mt != types.OCILayer {
			t.Fatalf("layer media type %s, want %s", mt, types.OCILayer)
		}
		rc, _ := layers[len(layers)-1].Uncompressed()
		files := untar(t, rc)
		sum := sha256.Sum256(files["plugin.wasm"])
		if sum != wasmSum {
			t.Fatalf("plugin.wasm sha256 %x, the built filter's %x", sum, wasmSum)
		}

		objs := objects(t, render(t, values))
		wp := find(t, objs, "WasmPlugin", release)
		if url := dig(wp, "spec", "url"); url != "oci://"+prefix+"/meshtrail-wasm:v0.1.0-test" {
			t.Errorf("WasmPlugin url %v", url)
		}
		if sha := dig(wp, "spec", "sha256"); sha != d.Hex {
			t.Errorf("WasmPlugin sha256 %v, the pushed artifact's digest %s", sha, d.Hex)
		}
		if err := kubeconform(t, render(t, values)); err != nil {
			t.Fatal(err)
		}
		t.Logf("filter sha256 %s, artifact %s", hex.EncodeToString(wasmSum[:]), d)
	})
}

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func untar(t *testing.T, rc io.ReadCloser) map[string][]byte {
	t.Helper()
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = b
		}
	}
}

func keys(m map[string][]byte) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return s
}
