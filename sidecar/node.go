package sidecar

import (
	"path/filepath"
	"strings"
)

// nodeGlob matches the kubelet's container logs:
// PODSDIR/NAMESPACE_POD_UID/CONTAINER/N.log (N the restart count; rotated
// files are N.log.DATE and N.log.DATE.gz, which the glob leaves out: the
// kubelet rotates by rename, and the renamed inode is read to its end).
func nodeGlob(podsDir string) string {
	return filepath.Join(podsDir, "*", "*", "*.log")
}

// podFromPath reads pod metadata from a kubelet log path. Pod names and
// namespaces cannot hold '_' (DNS labels and subdomains), so the directory
// splits unambiguously.
func podFromPath(podsDir, path string) (PodMeta, bool) {
	rel, err := filepath.Rel(podsDir, path)
	if err != nil {
		return PodMeta{}, false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 3 {
		return PodMeta{}, false
	}
	ids := strings.Split(parts[0], "_")
	if len(ids) != 3 || ids[0] == "" || ids[1] == "" {
		return PodMeta{}, false
	}
	return PodMeta{Namespace: ids[0], Name: ids[1], UID: ids[2], Container: parts[1]}, true
}
