// Package fscopy copies directory trees the way the agent's caches need:
// file modes and symbolic links kept as they are (a venv's bin/python is a
// link; a repository may hold links), sockets and devices skipped.
//
// It must not: follow links, change ownership, or delete anything.
package fscopy

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Tree copies the directory src into dst, which may already exist.
func Tree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return file(p, target, info.Mode().Perm())
		}
		return nil // sockets, devices
	})
}

func file(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
