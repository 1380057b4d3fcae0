package systemd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// unitDirs are the unit search paths inside an image root, highest priority
// first, as `systemctl --root` consults them for the system manager.
var unitDirs = []string{
	"/etc/systemd/system",
	"/usr/local/lib/systemd/system",
	"/lib/systemd/system",
	"/usr/lib/systemd/system",
}

// EnableOffline enables units inside an image root the way
// `systemctl --root=ROOT enable TARGET UNIT...` does, without a running
// systemd: for every WantedBy=/RequiredBy= in a unit's [Install] section it
// creates ROOT/etc/systemd/system/<W>.wants/<unit> (or .requires/) as a
// symlink to the unit file's path inside the image, plus Alias= links, and
// follows Also=. Template instances (clearml-agent@0.service) link to the
// template file and expand %i/%I/%p/%n/%N in [Install] values.
//
// target (may be "") is enabled first the same way; a target without an
// [Install] section is wired into multi-user.target.wants so it starts at
// boot. Existing links are replaced atomically, so re-running is harmless.
func EnableOffline(root, target string, units []string) error {
	if root == "" {
		return errors.New("enable offline: empty image root; pass the directory that holds etc/systemd/system")
	}
	e := offline{root: root, seen: map[string]bool{}}
	if target != "" {
		if err := e.enable(target, "multi-user.target"); err != nil {
			return err
		}
	}
	for _, u := range units {
		if err := e.enable(u, ""); err != nil {
			return err
		}
	}
	return nil
}

type offline struct {
	root string
	seen map[string]bool
}

// enable links one unit. fallbackWantedBy is used when the unit file has no
// WantedBy=/RequiredBy=/Alias= at all.
func (e *offline) enable(name, fallbackWantedBy string) error {
	if e.seen[name] {
		return nil
	}
	e.seen[name] = true
	if strings.Contains(name, "/") {
		return fmt.Errorf("enable offline %q: want a unit name such as clearml-agent@0.service, not a path", name)
	}
	prefix, instance, suffix, isTemplate := splitUnitName(name)
	file, err := e.find(name, prefix, suffix, isTemplate)
	if err != nil {
		return err
	}
	opts, err := readInstall(filepath.Join(e.root, file))
	if err != nil {
		return fmt.Errorf("enable offline %s: %w", name, err)
	}
	if isTemplate && instance == "" {
		instance = opts.defaultInstance
		if instance == "" {
			return fmt.Errorf("enable offline %s: a template needs an instance; use e.g. %s@0%s or set DefaultInstance=", name, prefix, suffix)
		}
		name = prefix + "@" + instance + suffix
	}
	spec := specifiers{name: name, prefix: prefix, instance: instance, suffix: suffix}
	etc := filepath.Join(e.root, "etc/systemd/system")
	wantedBy, requiredBy := opts.wantedBy, opts.requiredBy
	if len(wantedBy) == 0 && len(requiredBy) == 0 && len(opts.alias) == 0 && fallbackWantedBy != "" {
		wantedBy = []string{fallbackWantedBy}
	}
	if len(wantedBy) == 0 && len(requiredBy) == 0 && len(opts.alias) == 0 && len(opts.also) == 0 {
		return fmt.Errorf("enable offline %s: %s has no [Install] WantedBy=, RequiredBy=, Alias= or Also=; add e.g. WantedBy=multi-user.target", name, file)
	}
	for _, group := range []struct {
		dir  string
		list []string
	}{{".wants", wantedBy}, {".requires", requiredBy}} {
		for _, w := range group.list {
			w, err := spec.expand(w)
			if err != nil {
				return fmt.Errorf("enable offline %s: [Install] in %s: %w", name, file, err)
			}
			if err := linkAtomic(file, filepath.Join(etc, w+group.dir, name)); err != nil {
				return err
			}
		}
	}
	for _, a := range opts.alias {
		a, err := spec.expand(a)
		if err != nil {
			return fmt.Errorf("enable offline %s: Alias= in %s: %w", name, file, err)
		}
		if err := linkAtomic(file, filepath.Join(etc, a)); err != nil {
			return err
		}
	}
	for _, also := range opts.also {
		also, err := spec.expand(also)
		if err != nil {
			return fmt.Errorf("enable offline %s: Also= in %s: %w", name, file, err)
		}
		if err := e.enable(also, ""); err != nil {
			return err
		}
	}
	return nil
}

// find returns the unit file's path inside the image (absolute, without root).
func (e *offline) find(name, prefix, suffix string, isTemplate bool) (string, error) {
	candidates := []string{name}
	if isTemplate {
		candidates = append(candidates, prefix+"@"+suffix)
	}
	for _, c := range candidates {
		for _, d := range unitDirs {
			p := path.Join(d, c)
			fi, err := os.Stat(filepath.Join(e.root, p))
			if err == nil && fi.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("enable offline %s: no unit file %s in %s under %s; write the unit file first", name,
		strings.Join(candidates, " or "), strings.Join(unitDirs, ", "), e.root)
}

type installOpts struct {
	wantedBy, requiredBy, alias, also []string
	defaultInstance                   string
}

func readInstall(file string) (installOpts, error) {
	var o installOpts
	f, err := os.Open(file)
	if err != nil {
		return o, err
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		return o, fmt.Errorf("parse %s: %w", file, err)
	}
	for _, opt := range opts {
		if opt.Section != "Install" {
			continue
		}
		var dst *[]string
		switch opt.Name {
		case "WantedBy":
			dst = &o.wantedBy
		case "RequiredBy":
			dst = &o.requiredBy
		case "Alias":
			dst = &o.alias
		case "Also":
			dst = &o.also
		case "DefaultInstance":
			o.defaultInstance = strings.TrimSpace(opt.Value)
			continue
		default:
			continue
		}
		fields := strings.Fields(opt.Value)
		if len(fields) == 0 {
			*dst = nil // an empty assignment resets the list
			continue
		}
		*dst = append(*dst, fields...)
	}
	return o, nil
}

// splitUnitName splits "a@b.service" into ("a", "b", ".service", true).
func splitUnitName(name string) (prefix, instance, suffix string, template bool) {
	dot := strings.LastIndex(name, ".")
	if dot < 0 {
		return name, "", "", false
	}
	base, suffix := name[:dot], name[dot:]
	at := strings.Index(base, "@")
	if at < 0 {
		return base, "", suffix, false
	}
	return base[:at], base[at+1:], suffix, true
}

type specifiers struct{ name, prefix, instance, suffix string }

func (s specifiers) expand(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 == len(v) {
			return "", fmt.Errorf("%q ends in a lone %%; write %%%% for a literal percent", v)
		}
		i++
		switch v[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteString(s.name)
		case 'N':
			b.WriteString(strings.TrimSuffix(s.name, s.suffix))
		case 'p':
			b.WriteString(s.prefix)
		case 'i':
			b.WriteString(s.instance)
		case 'I':
			b.WriteString(unit.UnitNameUnescape(s.instance))
		default:
			return "", fmt.Errorf("%q uses specifier %%%c, which offline enable does not expand; use %%i, %%I, %%p, %%n or %%N", v, v[i])
		}
	}
	return b.String(), nil
}

// linkAtomic makes link a symlink to dest, replacing whatever is there.
func linkAtomic(dest, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == dest {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("enable offline: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enable offline: %w", err)
	}
	if err := os.Symlink(dest, tmp); err != nil {
		return fmt.Errorf("enable offline: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("enable offline: link %s -> %s: %w", link, dest, err)
	}
	return nil
}
