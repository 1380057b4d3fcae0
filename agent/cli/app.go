package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// Version is the agent version; set with -ldflags "-X .../agent/cli.Version=1.2.3".
var Version = "0.1.0-dev"

// Globals is the state shared by all subcommands.
type Globals struct {
	ConfigFile string // --config-file ("" = CLEARML_CONFIG_FILE, then ~/clearml.conf)
	Debug      bool
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
	Env        []string // os.Environ form
	Args       []string // the command line as given to Main (--detached starts it again)
	// Verifier checks credentials for `config --verify` and `init`; nil = HTTP auth.login.
	Verifier Verifier

	handlers map[string]func(ctx context.Context) error
}

// Getenv looks a variable up in g.Env ("" when unset).
func (g *Globals) Getenv(name string) string {
	for i := len(g.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(g.Env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// Home is $HOME from g.Env, else the user's home directory in the user
// database ("" when neither is known).
func (g *Globals) Home() string {
	if h := g.Getenv("HOME"); h != "" {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// TempDir is $TMPDIR from g.Env, else /tmp.
func (g *Globals) TempDir() string { return cmp.Or(g.Getenv("TMPDIR"), "/tmp") }

// LoadConfig loads clearml.conf (--config-file, CLEARML_CONFIG_FILE, ~/clearml.conf)
// with the environment overrides from g.Env.
func (g *Globals) LoadConfig() (*config.Config, error) {
	return config.Load(config.LoadOptions{File: g.ConfigFile, Env: g.Env, Home: g.Home()})
}

// Handle registers what a subcommand does. fn's error is printed as one line and
// gives exit status 1 (or ExitError's code).
func (g *Globals) Handle(cmd *kingpin.CmdClause, fn func(ctx context.Context) error) {
	if g.handlers == nil {
		g.handlers = map[string]func(ctx context.Context) error{}
	}
	g.handlers[cmd.FullCommand()] = fn
}

// ExitError ends a command with a given status after printing Msg (if any).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// commands are clearml-agent's subcommands, in the order --help lists them;
// each registers its flags and its action (Globals.Handle).
var commands = []func(app *kingpin.Application, g *Globals){
	registerInit,    // init_cmd.go
	registerConfig,  // config_cmd.go
	registerDaemon,  // daemon.go
	registerExecute, // execute.go
	registerDoctor,  // doctor.go
}

// NewApp builds the clearml-agent application with its subcommands.
func NewApp(g *Globals) *kingpin.Application {
	app := kingpin.New("clearml-agent", "ClearML Agent (Go): runs ClearML tasks from queues on this machine.")
	app.Version(Version)
	app.HelpFlag.Short('h')
	app.UsageWriter(g.Stdout)
	app.ErrorWriter(g.Stderr)
	app.Flag("config-file", "Configuration file to use instead of ~/clearml.conf (env CLEARML_CONFIG_FILE); it must exist.").
		PlaceHolder("PATH").StringVar(&g.ConfigFile)
	app.Flag("debug", "Print debugging information.").Short('d').BoolVar(&g.Debug)
	for _, register := range commands {
		register(app, g)
	}
	return app
}

// Main runs clearml-agent with args (without the program name) and returns the
// exit status. env is the whole environment it sees (os.Environ form): it
// reads no other.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	if env == nil {
		env = []string{} // nil would mean the process's environment to some callees
	}
	g := &Globals{Stdin: stdin, Stdout: stdout, Stderr: stderr, Env: env, Args: args}
	return run(context.Background(), g, args)
}

// parse runs kingpin without letting it exit the process. --help, help and
// --version end in kingpin's Terminate hook, which here records the status
// (the first one: code >= 0 then) and silences the app, since kingpin parses
// on after it (and would print the usage again when no command was given);
// Parse's results do not count then.
func parse(app *kingpin.Application, args []string) (cmd string, code int, err error) {
	code = -1
	app.Terminate(func(c int) {
		if code < 0 {
			code = c
			app.UsageWriter(io.Discard)
			app.ErrorWriter(io.Discard)
		}
	})
	cmd, err = app.Parse(args)
	return cmd, code, err
}

func run(ctx context.Context, g *Globals, args []string) int {
	app := NewApp(g)
	cmd, exited, err := parse(app, normalizeArgs(args))
	if exited >= 0 {
		return exited // --help, --version
	}
	if err != nil {
		fmt.Fprintf(g.Stderr, "clearml-agent: error: %v; try --help\n", err)
		return 2
	}
	if g.ConfigFile != "" {
		if st, err := os.Stat(g.ConfigFile); (err != nil || st.IsDir()) && cmd != "init" {
			fmt.Fprintf(g.Stderr, "clearml-agent: error: --config-file %q: file not found; create it with 'clearml-agent init --config-file %s' or fix the path\n", g.ConfigFile, g.ConfigFile)
			return 2
		}
		if abs, err := filepath.Abs(g.ConfigFile); err == nil {
			g.ConfigFile = abs
		}
		// Like the Python agent, --config-file is also exported to children.
		g.Env = append(g.Env, "CLEARML_CONFIG_FILE="+g.ConfigFile)
	}
	h, ok := g.handlers[cmd]
	if !ok {
		fmt.Fprintf(g.Stderr, "clearml-agent: error: no command given; try --help\n")
		return 2
	}
	if err := h(ctx); err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			if ee.Msg != "" {
				fmt.Fprintln(g.Stderr, ee.Msg)
			}
			return ee.Code
		}
		fmt.Fprintf(g.Stderr, "clearml-agent: error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	return 0
}
