package train

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

// cacheVersion changes whenever a change to the training code changes its
// result, so old cache entries are not reused.
const cacheVersion = "hbench-train-cache/1"

// GroupInfo identifies one Group of the training data.
type GroupInfo struct {
	Workload string `json:"workload"`
	Item     string `json:"item"`
	Layer    int    `json:"layer"`
	KVHead   int    `json:"kv_head"`
	QHeads   []int  `json:"q_heads"`
	T        int    `json:"tokens"`
	// SHA256 hashes the Group's shape and the float32 bits of its queries
	// and keys (values do not affect training).
	SHA256 string `json:"sha256"`
}

// FileInfo is one source file with its SHA-256.
type FileInfo struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

func hashGroup(h hash.Hash, g *attn.Group) {
	var buf [8]byte
	put := func(x int) {
		binary.LittleEndian.PutUint64(buf[:], uint64(x))
		h.Write(buf[:])
	}
	mat := func(m *tensor.Mat) {
		put(m.Rows)
		put(m.Cols)
		b := make([]byte, 4*len(m.Data))
		for i, x := range m.Data {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		h.Write(b)
	}
	put(g.Layer)
	put(g.KVHead)
	put(len(g.QHeads))
	for i, qh := range g.QHeads {
		put(qh)
		mat(g.Q[i])
	}
	mat(g.K)
	binary.LittleEndian.PutUint32(buf[:4], math.Float32bits(g.Scale))
	h.Write(buf[:4])
}

func groupInfos(groups []*attn.Group) []GroupInfo {
	out := make([]GroupInfo, len(groups))
	for i, g := range groups {
		h := sha256.New()
		hashGroup(h, g)
		out[i] = GroupInfo{Workload: g.Workload, Item: g.Item, Layer: g.Layer, KVHead: g.KVHead, QHeads: g.QHeads, T: g.T(), SHA256: hex.EncodeToString(h.Sum(nil))}
	}
	return out
}

// DataHash returns the SHA-256 (hex) of the training content of groups, in
// order: layers, heads, shapes, queries and keys.
func DataHash(groups []*attn.Group) string {
	h := sha256.New()
	for _, g := range groups {
		hashGroup(h, g)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Key returns the cache key of training cfg on groups: a SHA-256 (hex) of
// the code version, the canonical JSON of cfg (Workers excluded, it does
// not change the result) and DataHash(groups).
func Key(cfg Config, groups []*attn.Group) (string, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("train: cache key: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", cacheVersion, js, DataHash(groups))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Cached returns the path of weights trained with cfg on groups, training
// them only when cacheDir does not already hold them. The file is
// cacheDir/hashattention-<first 16 hex digits of Key>.safetensors; a file
// there that does not load is retrained over.
func Cached(ctx context.Context, cacheDir string, cfg Config, groups []*attn.Group, progress io.Writer) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("train config: %w", err)
	}
	path, key, err := CachePath(cacheDir, cfg, groups)
	if err != nil {
		return "", err
	}
	if InCache(path, key) {
		if progress != nil {
			fmt.Fprintf(progress, "trained weights found in cache: %s\n", path)
		}
		return path, nil
	}
	w, _, err := Train(ctx, cfg, groups, progress)
	if err != nil {
		return "", err
	}
	w.Metadata["train_key"] = key
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("train: cache: %w", err)
	}
	if err := w.Save(path); err != nil {
		return "", fmt.Errorf("train: cache: %w", err)
	}
	return path, nil
}

// CachePath returns where Cached keeps the weights of cfg trained on
// groups, and their cache key.
func CachePath(cacheDir string, cfg Config, groups []*attn.Group) (path, key string, err error) {
	key, err = Key(cfg, groups)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(cacheDir, "hashattention-"+key[:16]+".safetensors"), key, nil
}

// InCache reports whether path holds loadable weights trained under key.
func InCache(path, key string) bool {
	w, err := methods.LoadHashWeights(path)
	return err == nil && w.Metadata["train_key"] == key
}

// FileSHA256 returns the SHA-256 (hex) of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// AddFiles records the source files (with their SHA-256) in the training
// metadata of w, for callers that know which files the Groups came from.
func AddFiles(w *methods.HashWeights, paths []string) error {
	var tr Training
	if err := json.Unmarshal([]byte(w.Metadata["training"]), &tr); err != nil {
		return fmt.Errorf("train: weights have no training metadata: %w", err)
	}
	for _, p := range paths {
		sum, err := FileSHA256(p)
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		tr.Files = append(tr.Files, FileInfo{Path: p, SHA256: sum})
	}
	js, err := json.Marshal(tr)
	if err != nil {
		return fmt.Errorf("train: metadata: %w", err)
	}
	w.Metadata["training"] = string(js)
	return nil
}
