// Command image packs meshtrail for a cluster, offline, with
// go-containerregistry (`make image` runs it):
//
//   - the container image: the static meshtrail binary at
//     /usr/local/bin/meshtrail on an empty base, the build machine's CA
//     bundle for TLS to the sinks, a /tmp, user 65532 (non-root);
//   - dist/meshtrail.wasm as the OCI artifact an Istio WasmPlugin pulls
//     from an oci:// URL: the "compat" Wasm image variant, one
//     application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm
//     (what istio/pkg/wasm's extractOCIStandardImage reads).
//
// Both are written to an OCI image layout (--layout) and, with --push, to a
// registry. Layers have fixed timestamps: the same inputs give the same
// digests. The digests go to dist/*.digest; a WasmPlugin pins the
// artifact's manifest digest as its sha256 (Istio checks it after the pull).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every file's and the image's creation time: reproducible digests.
var epoch = time.Unix(0, 0).UTC()

const nonRootUser = "65532:65532"

func main() {
	binary := flag.String("binary", "bin/linux/meshtrail", "static linux meshtrail binary (CGO_ENABLED=0)")
	wasm := flag.String("wasm", "dist/meshtrail.wasm", "the filter (make wasm)")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates put at /etc/ssl/certs/ca-certificates.crt; empty: none")
	arch := flag.String("arch", "amd64", "the binary's GOARCH")
	version := flag.String("version", "dev", "image tag")
	out := flag.String("layout", "dist/oci", "OCI image layout directory to write both into")
	push := flag.String("push", "", "registry repository prefix to push to, e.g. 127.0.0.1:5000/meshtrail (image at PREFIX/meshtrail:VERSION, artifact at PREFIX/meshtrail-wasm:VERSION)")
	insecure := flag.Bool("insecure", false, "with --push: plain HTTP to the registry")
	valuesOut := flag.String("values-out", "dist/wasmplugin-values.yaml", "with --push: Helm values pinning the pushed artifact in the chart's WasmPlugin (helm install -f)")
	flag.Parse()
	if err := run(*binary, *wasm, *caBundle, *arch, *version, *out, *push, *valuesOut, *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(binary, wasm, caBundle, arch, version, out, push, valuesOut string, insecure bool) error {
	img, err := Image(binary, caBundle, arch)
	if err != nil {
		return err
	}
	art, err := WasmArtifact(wasm)
	if err != nil {
		return err
	}
	imgDigest, _ := img.Digest()
	artDigest, _ := art.Digest()
	if err := writeLayout(out, img, art); err != nil {
		return err
	}
	dist := filepath.Dir(wasm)
	for file, d := range map[string]v1.Hash{"meshtrail-image.digest": imgDigest, "meshtrail-wasm.digest": artDigest} {
		if err := os.WriteFile(filepath.Join(dist, file), []byte(d.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("image     %s\nwasm      %s (WasmPlugin sha256: %s)\nlayout    %s\n", imgDigest, artDigest, artDigest.Hex, out)
	if push == "" {
		return nil
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	for repo, i := range map[string]v1.Image{"meshtrail": img, "meshtrail-wasm": art} {
		ref, err := name.NewTag(push+"/"+repo+":"+version, opts...)
		if err != nil {
			return fmt.Errorf("--push %s: %w", push, err)
		}
		if err := remote.Write(ref, i); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		d, _ := i.Digest()
		fmt.Printf("pushed    %s@%s\n", ref, d)
	}
	// For oci:// URLs Istio's agent compares sha256 with the manifest digest.
	values := fmt.Sprintf("# make image PUSH=%s: the chart's WasmPlugin pinned to the pushed filter.\nistio:\n  wasmPlugin:\n    url: oci://%s/meshtrail-wasm:%s\n    sha256: %q\n",
		push, push, version, artDigest.Hex)
	if err := os.WriteFile(valuesOut, []byte(values), 0o644); err != nil {
		return err
	}
	fmt.Printf("values    %s\n", valuesOut)
	return nil
}

// Image is the meshtrail container image for linux/arch.
func Image(binary, caBundle, arch string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("the binary (build it with CGO_ENABLED=0 GOOS=linux): %w", err)
	}
	files := []file{
		{name: "tmp/", mode: 0o1777 | int64(os.ModeDir)},
		{name: "usr/local/bin/meshtrail", mode: 0o755, data: bin},
	}
	if caBundle != "" {
		ca, err := os.ReadFile(caBundle)
		if err != nil {
			return nil, fmt.Errorf("--ca-bundle: %w", err)
		}
		files = append(files, file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	layer, err := tarLayer(files, types.OCILayer)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", arch, v1.Time{Time: epoch}
	cfg.Config.User = nonRootUser
	cfg.Config.Entrypoint = []string{"/usr/local/bin/meshtrail"}
	cfg.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.source": "https://github.com/meshtrail/meshtrail",
		"org.opencontainers.image.title":  "meshtrail",
	}
	return mutate.ConfigFile(img, cfg)
}

// WasmArtifact is the filter as a compat-variant Wasm OCI image.
func WasmArtifact(wasm string) (v1.Image, error) {
	b, err := os.ReadFile(wasm)
	if err != nil {
		return nil, fmt.Errorf("the filter (make wasm): %w", err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm")) {
		return nil, fmt.Errorf("%s is not a WebAssembly module", wasm)
	}
	layer, err := tarLayer([]file{{name: "plugin.wasm", mode: 0o444, data: b}}, types.OCILayer)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "wasip1", "wasm", v1.Time{Time: epoch}
	return mutate.ConfigFile(img, cfg)
}

type file struct {
	name string
	mode int64
	data []byte
}

// tarLayer is a gzipped tar of files, owned by root, at the epoch.
func tarLayer(files []file, mt types.MediaType) (v1.Layer, error) {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode & 0o7777, ModTime: epoch, Format: tar.FormatPAX}
		if os.FileMode(f.mode)&os.ModeDir != 0 {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(mt))
}

func writeLayout(dir string, img, art v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for ref, i := range map[string]v1.Image{"meshtrail": img, "meshtrail-wasm": art} {
		if err := p.AppendImage(i, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
			return err
		}
	}
	return nil
}
