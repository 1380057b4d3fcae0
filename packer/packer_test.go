package packer

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

const (
	templateFile = "clearml-agent.pkr.hcl"
	exampleFile  = "example.pkrvars.hcl"
	scriptFile   = "scripts/provision-image.sh"
	qemuBuild    = "qemu.debian12"
)

// template is one parsed .pkr.hcl file.
type template struct {
	file    string
	body    *hclsyntax.Body
	vars    map[string]*hclsyntax.Block     // variable "name"
	locals  map[string]*hclsyntax.Attribute // locals { name = ... }
	sources map[string]*hclsyntax.Block     // source "type" "name", keyed type.name
	builds  []*hclsyntax.Block
}

func parseTemplate(t *testing.T, file string) *template {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(file)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", file, diags.Error())
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		t.Fatalf("%s: not native HCL syntax", file)
	}
	tp := &template{file: file, body: body, vars: map[string]*hclsyntax.Block{},
		locals: map[string]*hclsyntax.Attribute{}, sources: map[string]*hclsyntax.Block{}}
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			if len(b.Labels) != 1 {
				t.Errorf("%s:%d: variable block wants one label, has %q", file, b.TypeRange.Start.Line, b.Labels)
				continue
			}
			if tp.vars[b.Labels[0]] != nil {
				t.Errorf("%s: variable %q declared twice", file, b.Labels[0])
			}
			tp.vars[b.Labels[0]] = b
		case "locals":
			for name, a := range b.Body.Attributes {
				tp.locals[name] = a
			}
		case "source":
			if len(b.Labels) != 2 {
				t.Errorf("%s:%d: source block wants two labels, has %q", file, b.TypeRange.Start.Line, b.Labels)
				continue
			}
			tp.sources[b.Labels[0]+"."+b.Labels[1]] = b
		case "build":
			tp.builds = append(tp.builds, b)
		default:
			t.Errorf("%s:%d: unexpected top-level block %q", file, b.TypeRange.Start.Line, b.Type)
		}
	}
	return tp
}

func templates(t *testing.T) []*template {
	t.Helper()
	files, err := filepath.Glob("*.pkr.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.pkr.hcl in packer/ (%v)", err)
	}
	var out []*template
	for _, f := range files {
		out = append(out, parseTemplate(t, f))
	}
	return out
}

// attrs calls f for every expression attribute in body and its nested
// blocks: all but a variable's type constraint (string, list(string)), which
// is a type, not a reference.
func attrs(body *hclsyntax.Body, f func(*hclsyntax.Attribute)) {
	for _, a := range body.Attributes {
		f(a)
	}
	for _, b := range body.Blocks {
		if b.Type != "variable" {
			attrs(b.Body, f)
			continue
		}
		for name, a := range b.Body.Attributes {
			if name != "type" {
				f(a)
			}
		}
		for _, nested := range b.Body.Blocks {
			attrs(nested.Body, f)
		}
	}
}

func stringAttr(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) (string, bool) {
	t.Helper()
	a := b.Body.Attributes[name]
	if a == nil {
		return "", false
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

func TestVariablesDocumented(t *testing.T) {
	for _, tp := range templates(t) {
		if len(tp.vars) == 0 {
			t.Errorf("%s declares no variables", tp.file)
		}
		for name, b := range tp.vars {
			desc, ok := stringAttr(t, b, "description", nil)
			if !ok || len(strings.TrimSpace(desc)) < 10 {
				t.Errorf("%s: variable %q has no description (want a literal string saying what it is)", tp.file, name)
			}
			if b.Body.Attributes["type"] == nil {
				t.Errorf("%s: variable %q has no type", tp.file, name)
			}
		}
	}
}

// Every var.X, local.X and path.X a template uses exists (packer 1.6.6
// fails on them only when the build that uses them is validated).
func TestReferencesDeclared(t *testing.T) {
	for _, tp := range templates(t) {
		used := map[string]bool{}
		attrs(tp.body, func(a *hclsyntax.Attribute) {
			for _, tr := range hclsyntax.Variables(a.Expr) {
				root := tr.RootName()
				var name string
				if len(tr) > 1 {
					if step, ok := tr[1].(hcl.TraverseAttr); ok {
						name = step.Name
					}
				}
				at := tr.SourceRange().Start.Line
				switch root {
				case "var":
					used[name] = true
					if tp.vars[name] == nil {
						t.Errorf("%s:%d: var.%s is not declared", tp.file, at, name)
					}
				case "local":
					if tp.locals[name] == nil {
						t.Errorf("%s:%d: local.%s is not declared", tp.file, at, name)
					}
				case "path":
					if name != "root" {
						t.Errorf("%s:%d: path.%s: packer 1.6.6 knows path.root only", tp.file, at, name)
					}
				default:
					t.Errorf("%s:%d: reference to unknown %s", tp.file, at, root)
				}
			}
		})
		for name := range tp.vars {
			if !used[name] {
				t.Errorf("%s: variable %q is declared but never used", tp.file, name)
			}
		}
	}
}

func TestSourcesAndBuild(t *testing.T) {
	tp := parseTemplate(t, templateFile)
	types := map[string]bool{}
	for key := range tp.sources {
		types[strings.SplitN(key, ".", 2)[0]] = true
	}
	for _, want := range []string{"qemu", "amazon-ebs", "googlecompute"} {
		if !types[want] {
			t.Errorf("%s: no %s source", templateFile, want)
		}
	}
	if len(tp.builds) != 1 {
		t.Fatalf("%s: want one build block, have %d", templateFile, len(tp.builds))
	}
	build := tp.builds[0]
	a := build.Body.Attributes["sources"]
	if a == nil {
		t.Fatalf("%s: build has no sources", templateFile)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: build sources: %s", templateFile, diags.Error())
	}
	listed := map[string]bool{}
	for it := v.ElementIterator(); it.Next(); {
		_, s := it.Element()
		listed[strings.TrimPrefix(s.AsString(), "source.")] = true
	}
	for key := range tp.sources {
		if !listed[key] {
			t.Errorf("%s: source %s is not in the build's sources", templateFile, key)
		}
	}
	for key := range listed {
		if tp.sources[key] == nil {
			t.Errorf("%s: build lists source.%s, which is not declared", templateFile, key)
		}
	}

	// The local files the provisioners and sources name exist: evaluate with
	// path.root and the variables' defaults (locals that need functions,
	// such as the timestamp, are left out).
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"path": cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal(dir)}),
	}}
	defaults := map[string]cty.Value{}
	for name, b := range tp.vars {
		if d := b.Body.Attributes["default"]; d != nil {
			if v, diags := d.Expr.Value(nil); !diags.HasErrors() {
				defaults[name] = v
			}
		}
	}
	ctx.Variables["var"] = cty.ObjectVal(defaults)
	locals := map[string]cty.Value{}
	for name, a := range tp.locals {
		if v, diags := a.Expr.Value(ctx); !diags.HasErrors() {
			locals[name] = v
		}
	}
	if _, ok := locals["installer"]; !ok {
		t.Errorf("%s: local.installer (the default installer path) does not evaluate", templateFile)
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)

	var scripts []string
	for _, p := range build.Body.Blocks {
		if p.Type != "provisioner" || len(p.Labels) != 1 {
			continue
		}
		switch p.Labels[0] {
		case "shell":
			if s, ok := stringAttr(t, p, "script", ctx); ok {
				scripts = append(scripts, s)
				if _, err := os.Stat(s); err != nil {
					t.Errorf("%s:%d: shell provisioner script: %v", templateFile, p.TypeRange.Start.Line, err)
				}
			}
		case "file":
			if g, ok := p.Body.Attributes["generated"]; ok {
				if v, _ := g.Expr.Value(nil); v.True() {
					continue // checked at upload time (the release tarball)
				}
			}
			s, ok := stringAttr(t, p, "source", ctx)
			if !ok {
				t.Errorf("%s:%d: file provisioner source does not evaluate from defaults", templateFile, p.TypeRange.Start.Line)
			} else if _, err := os.Stat(s); err != nil {
				t.Errorf("%s:%d: file provisioner source: %v", templateFile, p.TypeRange.Start.Line, err)
			}
		}
	}
	want := filepath.Join(dir, scriptFile)
	if len(scripts) != 1 || filepath.Clean(scripts[0]) != want {
		t.Errorf("%s: shell provisioner scripts %q, want exactly %s", templateFile, scripts, want)
	}
	qemu := tp.sources["qemu.debian12"]
	if qemu == nil {
		t.Fatalf("%s: no source qemu.debian12", templateFile)
	}
	cd := qemu.Body.Attributes["cd_files"]
	if cd == nil {
		t.Fatalf("%s: qemu source has no cd_files (the cloud-init seed)", templateFile)
	}
	files, diags := cd.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("cd_files: %s", diags.Error())
	}
	for it := files.ElementIterator(); it.Next(); {
		_, f := it.Element()
		if _, err := os.Stat(f.AsString()); err != nil {
			t.Errorf("qemu cd_files: %v", err)
		}
	}
}

// exampleVars parses example.pkrvars.hcl: its attribute names.
func exampleVars(t *testing.T) map[string]bool {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(exampleFile)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", exampleFile, diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	if len(body.Blocks) > 0 {
		t.Errorf("%s: variable files hold attributes only, found block %q", exampleFile, body.Blocks[0].Type)
	}
	names := map[string]bool{}
	for name, a := range body.Attributes {
		if _, diags := a.Expr.Value(nil); diags.HasErrors() {
			t.Errorf("%s: %s is not a constant: %s", exampleFile, name, diags.Error())
		}
		names[name] = true
	}
	return names
}

// README.md's table has a row for every variable, and names no other.
func TestReadmeDocumentsVariables(t *testing.T) {
	tp := parseTemplate(t, templateFile)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|").FindAllSubmatch(readme, -1) {
		rows[string(m[1])] = true
	}
	for name := range tp.vars {
		if !rows[name] {
			t.Errorf("README.md: no row for variable %q", name)
		}
	}
	for name := range rows {
		if tp.vars[name] == nil {
			t.Errorf("README.md: row for %q, which %s does not declare", name, templateFile)
		}
	}
}

func TestExampleVariablesDeclared(t *testing.T) {
	tp := parseTemplate(t, templateFile)
	set := exampleVars(t)
	for name := range set {
		if tp.vars[name] == nil {
			t.Errorf("%s sets %q, which %s does not declare", exampleFile, name, templateFile)
		}
	}
	for _, name := range requiredVars(t, tp) {
		if !set[name] {
			t.Errorf("%s does not set the required variable %q", exampleFile, name)
		}
	}
}

func requiredVars(t *testing.T, tp *template) []string {
	t.Helper()
	var req []string
	for name, b := range tp.vars {
		if b.Body.Attributes["default"] == nil {
			req = append(req, name)
		}
	}
	sort.Strings(req)
	if len(req) == 0 {
		t.Fatalf("%s: no required variables (api_host, agent_tarball, agent_sha256 should have no default)", templateFile)
	}
	return req
}

// packerValidate runs the real `packer validate ARGS...` from the repository
// root (so the paths read as in README.md) and returns its exit status and
// output with whitespace runs folded (packer wraps its messages).
func packerValidate(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := testenv.Tool(t, "packer")
	cmd := exec.Command(bin, append([]string{"validate"}, args...)...)
	cmd.Dir = ".."
	// No update check (it would reach the network); no log noise.
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "PACKER_LOG=")
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("packer validate %q: %v", args, err)
	}
	return code, strings.Join(strings.Fields(string(out)), " ")
}

var (
	templatePath = "packer/" + templateFile
	varFile      = "-var-file=packer/" + exampleFile
)

// offlineImage writes a stand-in for the Debian cloud image and a
// SHA512SUMS that lists it, as a user who downloaded both would have, so the
// qemu source validates without a network.
func offlineImage(t *testing.T) (image, sums string) {
	t.Helper()
	dir := t.TempDir()
	image = filepath.Join(dir, "debian-12-genericcloud-amd64.qcow2")
	data := []byte("not a real disk image; packer validate only checks its checksum entry\n")
	if err := os.WriteFile(image, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(data)
	sums = filepath.Join(dir, "SHA512SUMS")
	if err := os.WriteFile(sums, []byte(hex.EncodeToString(sum[:])+"  debian-12-genericcloud-amd64.qcow2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return image, sums
}

func TestPackerValidate(t *testing.T) {
	testenv.Tool(t, "packer")

	t.Run("fmt", func(t *testing.T) {
		cmd := exec.Command("packer", "fmt", "-check", "-diff", ".")
		cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("packer fmt -check -diff packer/: %v (run packer fmt packer/)\n%s", err, out)
		}
	})

	t.Run("syntax-only", func(t *testing.T) {
		code, out := packerValidate(t, "-syntax-only", varFile, templatePath)
		if code != 0 || !strings.Contains(out, "Syntax-only check passed") {
			t.Errorf("exit %d: %s", code, out)
		}
	})

	// amazon-ebs and googlecompute validate offline and without cloud
	// credentials in 1.6.6 (the source AMI filter, the image family and the
	// credentials are resolved by `packer build`). The qemu source's default
	// checksum is Debian's SHA512SUMS URL, which `packer validate` downloads:
	// offline it is validated below with a local image and SHA512SUMS.
	t.Run("example, cloud sources", func(t *testing.T) {
		if code, out := packerValidate(t, varFile, "-except="+qemuBuild, templatePath); code != 0 {
			t.Errorf("exit %d: %s", code, out)
		}
	})

	t.Run("example, qemu from a local image", func(t *testing.T) {
		image, sums := offlineImage(t)
		code, out := packerValidate(t, varFile, "-only="+qemuBuild,
			"-var", "qemu_image_url="+image, "-var", "qemu_image_checksum=file:"+sums, templatePath)
		if code != 0 {
			t.Errorf("exit %d: %s", code, out)
		}
		// An image the checksum list does not name is refused.
		code, out = packerValidate(t, varFile, "-only="+qemuBuild,
			"-var", "qemu_image_url="+filepath.Join(filepath.Dir(image), "other.qcow2"), "-var", "qemu_image_checksum=file:"+sums, templatePath)
		if code == 0 || !strings.Contains(out, "no checksum found") {
			t.Errorf("image missing from SHA512SUMS: exit %d: %s", code, out)
		}
	})

	t.Run("example, every source", func(t *testing.T) {
		code, out := packerValidate(t, varFile, templatePath)
		switch {
		case code == 0:
		case strings.Contains(out, "Error downloading checksum file") && strings.Count(out, "Error") == 2:
			// "Error: 1 error(s) occurred: * Error downloading checksum file": the only error.
			t.Logf("offline: the qemu source's default checksum URL is unreachable (validated above with a local image): %s", out)
		default:
			t.Errorf("exit %d: %s", code, out)
		}
	})

	tp := parseTemplate(t, templateFile)
	for _, name := range requiredVars(t, tp) {
		t.Run("missing "+name, func(t *testing.T) {
			src, err := os.ReadFile(exampleFile)
			if err != nil {
				t.Fatal(err)
			}
			drop := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*=.*\n`)
			if !drop.Match(src) {
				t.Fatalf("%s has no line setting %s", exampleFile, name)
			}
			vars := filepath.Join(t.TempDir(), "vars.pkrvars.hcl")
			if err := os.WriteFile(vars, drop.ReplaceAll(src, nil), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out := packerValidate(t, "-var-file="+vars, "-except="+qemuBuild, templatePath)
			if code == 0 || !strings.Contains(out, `Unset variable "`+name+`"`) {
				t.Errorf("without %s: exit %d, want an error naming it: %s", name, code, out)
			}
		})
	}

	t.Run("bad agent_sha256", func(t *testing.T) {
		code, out := packerValidate(t, varFile, "-except="+qemuBuild, "-var", "agent_sha256=abc123", templatePath)
		if code == 0 || !strings.Contains(out, "The agent_sha256 variable must be the tarball's sha256") {
			t.Errorf("exit %d: %s", code, out)
		}
	})

	t.Run("bad api_host", func(t *testing.T) {
		code, out := packerValidate(t, varFile, "-except="+qemuBuild, "-var", "api_host=api.clear.ml", templatePath)
		if code == 0 || !strings.Contains(out, "The api_host variable must be an http:// or https:// URL") {
			t.Errorf("exit %d: %s", code, out)
		}
	})
}

func TestProvisionScriptSyntax(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	if out, err := exec.Command(sh, "-n", scriptFile).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v\n%s", scriptFile, err, out)
	}
	if dash, err := exec.LookPath("dash"); err == nil {
		if out, err := exec.Command(dash, "-n", scriptFile).CombinedOutput(); err != nil {
			t.Errorf("dash -n %s: %v\n%s", scriptFile, err, out)
		}
	}
	info, err := os.Stat(scriptFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", scriptFile)
	}
}

// The script refuses bad input in one line, before it changes anything: the
// tools it would change the system with (apt-get, dpkg-query, cloud-init,
// docker) are stubs here that record being called.
func TestProvisionScriptBadInput(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	dir := t.TempDir()
	stubs := filepath.Join(dir, "stubs")
	called := filepath.Join(dir, "called")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"apt-get", "dpkg-query", "cloud-init", "docker", "systemctl"} {
		body := "#!/bin/sh\necho " + tool + " >>" + called + "\nexit 0\n"
		if err := os.WriteFile(filepath.Join(stubs, tool), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(dir, "clearml-agent-go_v1_linux_amd64.tar.gz")
	installer := filepath.Join(dir, "install.sh")
	for _, f := range []string{tarball, installer} {
		if err := os.WriteFile(f, []byte("stand-in\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := map[string]string{
		"AGENT_TARBALL": tarball,
		"AGENT_SHA256":  strings.Repeat("ab", 32),
		"API_HOST":      "https://api.example.com",
		"INSTALLER":     installer,
		"CPU_AGENTS":    "1",
	}
	script, err := filepath.Abs(scriptFile)
	if err != nil {
		t.Fatal(err)
	}
	run := func(env map[string]string) (int, string, string) {
		cmd := exec.Command(sh, script)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run %s: %v", script, err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	with := func(changes ...string) map[string]string {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		for i := 0; i+1 < len(changes); i += 2 {
			if changes[i+1] == "<unset>" {
				delete(env, changes[i])
			} else {
				env[changes[i]] = changes[i+1]
			}
		}
		return env
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no environment", map[string]string{}, []string{"missing environment: AGENT_TARBALL, AGENT_SHA256, API_HOST"}},
		{"no API_HOST", with("API_HOST", "<unset>"), []string{"missing environment: API_HOST;"}},
		{"no AGENT_SHA256", with("AGENT_SHA256", ""), []string{"missing environment: AGENT_SHA256;"}},
		{"short sha", with("AGENT_SHA256", "abc"), []string{"AGENT_SHA256=abc is not a sha256", "got 3"}},
		{"not hex", with("AGENT_SHA256", strings.Repeat("zz", 32)), []string{"AGENT_SHA256=zz", "64 hex digits"}},
		{"api host without scheme", with("API_HOST", "api.example.com"), []string{"API_HOST=api.example.com: want an http:// or https:// URL"}},
		{"bad web host", with("WEB_HOST", "app"), []string{"WEB_HOST=app"}},
		{"bad bool", with("DOCKER_MODE", "maybe"), []string{"DOCKER_MODE=maybe: want true or false"}},
		{"bad cpu agents", with("CPU_AGENTS", "two"), []string{"CPU_AGENTS=two: want a whole number"}},
		{"no agents", with("CPU_AGENTS", "0"), []string{"nothing to provision", "GPUS", "CPU_AGENTS", "SERVICES_AGENT"}},
		{"relative prefix", with("AGENT_PREFIX", "usr/local"), []string{"AGENT_PREFIX=usr/local: want an absolute path"}},
		{"no tarball", with("AGENT_TARBALL", filepath.Join(dir, "none.tar.gz")), []string{"AGENT_TARBALL=" + filepath.Join(dir, "none.tar.gz") + ": no such file"}},
		{"no installer", with("INSTALLER", filepath.Join(dir, "none.sh")), []string{"INSTALLER=" + filepath.Join(dir, "none.sh") + ": no such file"}},
		{"no installer next to the script", with("INSTALLER", "<unset>"), []string{"INSTALLER is not set and there is no install.sh next to"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(c.env)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if code != 1 || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "provision-image.sh: ") {
				t.Fatalf("exit %d, want 1 and one line on stderr\nstdout: %q\nstderr: %q", code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if b, err := os.ReadFile(called); err == nil {
				t.Errorf("bad input, yet the script ran: %s", b)
				os.Remove(called)
			}
		})
	}
}
