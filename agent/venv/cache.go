package venv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/gpufleet/clearml-agent-go/internal/fscopy"
)

// lockWait bounds the wait for another agent building the same cache entry.
var lockWait = 30 * time.Minute

// cacheKey is sha256 over everything that makes two venvs interchangeable.
func cacheKey(spec Spec, version string, reqs []string) string {
	sorted := slices.Clone(reqs)
	sort.Strings(sorted)
	h := sha256.New()
	fmt.Fprintf(h, "python=%s\nsystem_site_packages=%t\nindex=%s\n", version, spec.SystemSitePackages, spec.IndexURL)
	for _, u := range spec.ExtraIndexURLs {
		fmt.Fprintf(h, "extra_index=%s\n", u)
	}
	for _, f := range spec.ExtraPipFlags {
		fmt.Fprintf(h, "flag=%s\n", f)
	}
	for _, v := range spec.PipVersion {
		fmt.Fprintf(h, "pip_version=%s\n", v)
	}
	for _, p := range spec.PriorityPackages {
		fmt.Fprintf(h, "priority=%s\n", p)
	}
	for _, p := range spec.PriorityOptionalPackages {
		fmt.Fprintf(h, "priority_optional=%s\n", p)
	}
	for _, r := range sorted {
		fmt.Fprintf(h, "req=%s\n", r)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// uncacheable says why a requirement set must not be cached, or "".
func uncacheable(reqs []string) string {
	for _, r := range reqs {
		l := strings.ToLower(r)
		switch {
		case strings.HasPrefix(l, "-r"), strings.HasPrefix(l, "--requirement"),
			strings.HasPrefix(l, "-c"), strings.HasPrefix(l, "--constraint"):
			return fmt.Sprintf("%q refers to another file", r)
		case strings.HasPrefix(l, "-e"), strings.HasPrefix(l, "--editable"):
			return fmt.Sprintf("%q is an editable install", r)
		case strings.HasPrefix(l, "-f"), strings.HasPrefix(l, "--find-links"):
			return fmt.Sprintf("%q reads packages from a directory", r)
		case strings.Contains(l, "git+"), strings.Contains(l, "file:"), strings.HasPrefix(l, "."), strings.HasPrefix(l, "/"),
			!strings.Contains(l, "://") && (strings.Contains(l, "/") ||
				strings.HasSuffix(l, ".whl") || strings.HasSuffix(l, ".zip") || strings.HasSuffix(l, ".tar.gz")):
			return fmt.Sprintf("%q is not a pinned index package", r)
		}
	}
	return ""
}

// withCache serves dir from the cache entry for key, or runs build and
// stores the result. It reports whether the entry was a hit. If the entry
// stays locked past lockWait, it builds without the cache.
func withCache(ctx context.Context, spec Spec, key, dir string, log func(string), build func() error) (bool, error) {
	if err := os.MkdirAll(spec.CacheDir, 0o755); err != nil {
		return false, fmt.Errorf("venv cache %s: %w; fix agent.venvs_cache.path or its permissions", spec.CacheDir, err)
	}
	entry := filepath.Join(spec.CacheDir, key)
	lock := flock.New(entry + ".lock")
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	locked, err := lock.TryLockContext(lctx, 100*time.Millisecond)
	cancel()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil || !locked {
		log(fmt.Sprintf("venv cache entry %s busy after %s; building without the cache", key[:12], lockWait))
		return false, build()
	}
	defer lock.Unlock()

	if _, err := os.Stat(filepath.Join(entry, "bin", "python")); err == nil {
		if err := copyVenv(entry, dir); err != nil {
			return false, fmt.Errorf("copying cached venv %s to %s: %w", entry, dir, err)
		}
		now := time.Now()
		os.Chtimes(entry, now, now) // LRU stamp; failure only affects eviction order
		return true, nil
	}

	if err := build(); err != nil {
		return false, err
	}
	if err := copyVenv(dir, entry); err != nil {
		// The task's venv is fine; only the cache missed out.
		log(fmt.Sprintf("warning: storing venv in cache %s failed: %v", entry, err))
		return false, nil
	}
	log(fmt.Sprintf("stored venv in cache as %s", key[:12]))
	evict(spec.CacheDir, key, spec.CacheMaxEntries, log)
	return false, nil
}

// copyVenv copies the venv src to dst through a temporary sibling, rewriting
// src's absolute path to dst's in bin/ and pyvenv.cfg, then renames it in
// place. dst must not exist or is replaced.
func copyVenv(src, dst string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := fscopy.Tree(src, tmp); err != nil {
		return err
	}
	if err := relocate(tmp, src, dst); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// relocate replaces the old venv path with the new one in the text files a
// venv keeps absolute paths in: bin/* (shebangs, activate) and pyvenv.cfg.
func relocate(root, oldPath, newPath string) error {
	files := []string{filepath.Join(root, "pyvenv.cfg")}
	ents, err := os.ReadDir(filepath.Join(root, "bin"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			files = append(files, filepath.Join(root, "bin", e.Name()))
		}
	}
	old, repl := []byte(oldPath), []byte(newPath)
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil || info.Size() > 1<<20 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 || !bytes.Contains(b, old) {
			continue // binary, or nothing to rewrite
		}
		if err := os.WriteFile(f, bytes.ReplaceAll(b, old, repl), info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// evict removes the least recently used entries beyond max, skipping any
// entry another agent holds the lock of.
func evict(cacheDir, keep string, max int, log func(string)) {
	if max <= 0 {
		max = 10
	}
	ents, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	type entry struct {
		name string
		mod  time.Time
	}
	var all []entry
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, entry{e.Name(), info.ModTime()})
	}
	if len(all) <= max {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	for _, e := range all[max:] {
		if e.name == keep {
			continue
		}
		p := filepath.Join(cacheDir, e.name)
		l := flock.New(p + ".lock")
		ok, err := l.TryLock()
		if err != nil || !ok {
			continue
		}
		trash, err := os.MkdirTemp(cacheDir, ".evict-")
		if err == nil {
			if err = os.Rename(p, filepath.Join(trash, "v")); err == nil {
				log(fmt.Sprintf("venv cache: evicted %s", e.name[:min(12, len(e.name))]))
			}
			os.RemoveAll(trash)
		}
		l.Unlock()
	}
}
