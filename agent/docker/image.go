package docker

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"

	"github.com/google/shlex"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// TaskContainer is the task's container section (tasks.get_all
// only_fields [container]).
type TaskContainer struct {
	Image       string
	Arguments   []string // container.arguments, shell-split
	SetupScript string   // container.setup_shell_script
}

// TaskFacts are the task fields agent.default_docker.match_rules match on.
type TaskFacts struct {
	Project    string // the project's full name ("a/b")
	ProjectID  string
	Repository string // script.repository
	Branch     string // script.branch
	Binary     string // script.binary
	UserID     string
	Tags       []string
}

// ImageInput is what the image choice is made from.
type ImageInput struct {
	Task  TaskContainer
	Facts TaskFacts
	// CLIDocker is the daemon's --docker value ("" when not given): an image,
	// optionally followed by its arguments ("img --ipc=host").
	CLIDocker string
}

// ArgSource says where a list of docker arguments came from, for messages and
// for what it may do.
type ArgSource struct {
	// Name is the source as the user knows it: "the task's container
	// arguments", "--docker", "agent.extra_docker_arguments (/root/clearml.conf:12)".
	Name string
	// Fix says where to change the arguments, e.g. "edit the task's container
	// arguments" or "edit agent.extra_docker_arguments".
	Fix string
	// Trusted is true for arguments the agent's administrator set (the
	// configuration, the environment, the daemon's flags); false for the
	// task's own, which may not mount the agent's protected paths.
	Trusted bool
}

// ImageChoice is the container a task runs in.
type ImageChoice struct {
	Image     string
	Arguments []string
	// ArgsSource is where Arguments came from.
	ArgsSource ArgSource
	// SetupScript is the task's container.setup_shell_script (or a match
	// rule's).
	SetupScript string
	// From names where Image came from: "the task", "agent.default_docker.match_rules[1]",
	// "--docker", "CLEARML_DOCKER_IMAGE", "agent.default_docker.image (...)".
	From string
	// Default is true when the agent's default image is used (the log line
	// says "default docker").
	Default bool
	// WriteBack is true when the image, arguments and setup script must be
	// written into the task (tasks.edit container, force).
	WriteBack bool
	// Rule is the index of the match rule that applied, -1 for none.
	Rule int
}

// LogLine is the task log line of the Python agent:
// "Running Task T inside [default ]docker: <image> arguments: [...]", with
// secret -e values masked.
func (c ImageChoice) LogLine(taskID string, hideKeys []string) string {
	def := ""
	if c.Default {
		def = "default "
	}
	return fmt.Sprintf("Running Task %s inside %sdocker: %s arguments: %s",
		taskID, def, c.Image, pyList(maskArgs(c.Arguments, hideKeys)))
}

// Sources of arguments and images, for messages.
var (
	taskArgs = ArgSource{Name: "the task's container arguments", Fix: "edit the task's container arguments (Execution > Container in the web app)"}
	cliArgs  = ArgSource{Name: "--docker", Fix: "change the daemon's --docker value", Trusted: true}
)

// ChooseImage picks the task's container (reference section 4.1):
//
//   - The agent default is --docker (a value with spaces is the image and its
//     arguments; without arguments agent.default_docker.arguments apply), else
//     CLEARML_DOCKER_IMAGE / agent.default_docker.image (the same splitting).
//   - agent.default_docker.match_rules, unless --docker was given: the first
//     rule whose every match term finds one of its regexes in the task fills in
//     the task's empty image, arguments and setup script (all three, even set
//     ones, with force_container_rules).
//   - A task (or rule) image runs with only its own arguments; no image, or
//     agent.disable_task_docker_override, runs the agent default.
//   - The setup script always comes from the task (or a rule).
//
// WriteBack is set when the default (with update_back_task) or a rule (its
// update_back_task, else the setting) chose the container. Warnings are for the
// task log.
func ChooseImage(in ImageInput, s config.DockerSettings) (ImageChoice, []string, error) {
	var warnings []string
	def, err := agentDefault(in.CLIDocker, s)
	if err != nil {
		return ImageChoice{}, nil, err
	}
	task := in.Task
	task.Image = strings.TrimSpace(task.Image)
	c := ImageChoice{Rule: -1, SetupScript: task.SetupScript}
	if s.DisableTaskDockerOverride {
		def.SetupScript, def.WriteBack = task.SetupScript, s.UpdateBackTask
		return def, nil, nil
	}

	imageFrom, argsFrom := "the task", taskArgs
	if strings.TrimSpace(in.CLIDocker) == "" && len(s.MatchRules) > 0 {
		i, w, err := matchRule(s.MatchRules, in.Facts, task.Image)
		if err != nil {
			return ImageChoice{}, nil, err
		}
		warnings = append(warnings, w...)
		if i >= 0 {
			r := s.MatchRules[i]
			c.Rule = i
			changed := false
			if task.Image == "" || r.Force {
				task.Image, imageFrom = strings.TrimSpace(r.Image), r.Key
				changed = true
			}
			if len(task.Arguments) == 0 || r.Force {
				task.Arguments = r.Arguments
				argsFrom = ArgSource{Name: r.Key + ".arguments", Fix: "edit " + r.Key + ".arguments", Trusted: true}
				changed = true
			}
			if task.SetupScript == "" || r.Force {
				task.SetupScript = r.SetupShellScript
				changed = true
			}
			c.WriteBack = changed && s.UpdateBackTask
			if r.UpdateBackTask != nil {
				c.WriteBack = changed && *r.UpdateBackTask
			}
		}
	}
	if task.Image == "" {
		def.SetupScript, def.Rule = task.SetupScript, c.Rule
		def.WriteBack = s.UpdateBackTask
		return def, warnings, nil
	}
	c.Image, c.From = task.Image, imageFrom
	c.Arguments, c.ArgsSource = task.Arguments, argsFrom
	c.SetupScript = task.SetupScript
	return c, warnings, nil
}

// agentDefault is the agent's default image and arguments.
func agentDefault(cli string, s config.DockerSettings) (ImageChoice, error) {
	c := ImageChoice{Default: true, Rule: -1}
	value, from := strings.TrimSpace(cli), "--docker"
	src := cliArgs
	if value == "" {
		value, from = s.DefaultImage, s.DefaultImageOrigin
		src = ArgSource{Name: from, Fix: "change " + strings.SplitN(from, " ", 2)[0], Trusted: true}
	}
	parts, err := shlex.Split(value)
	if err != nil {
		return c, fmt.Errorf("docker image %q (from %s) does not split into an image and arguments: %v; balance its quotes", value, from, err)
	}
	if len(parts) == 0 || parts[0] == "" {
		return c, fmt.Errorf("docker image from %s is empty; name an image, e.g. --docker python:3.11", from)
	}
	c.Image, c.From = parts[0], from
	if len(parts) > 1 {
		c.Arguments, c.ArgsSource = parts[1:], src
		return c, nil
	}
	c.Arguments = s.DefaultArguments
	c.ArgsSource = ArgSource{Name: cmp.Or(s.DefaultArgumentsOrigin, "agent.default_docker.arguments"), Fix: "edit agent.default_docker.arguments", Trusted: true}
	return c, nil
}

// matchTerms are the match keys a rule may use, with the task field each one
// reads.
var matchTerms = []string{"project", "project_id", "script.repository", "script.branch", "script.binary", "user_id", "container", "tags"}

// matchRule returns the index of the first rule that matches, or -1. A term
// matches when each of its regexes finds at least one of the field's values
// (tags are several values); a rule matches when all its terms do. Rules
// without match are skipped; a rule on requirements (which this agent does not
// evaluate) is skipped with a warning.
func matchRule(rules []config.DockerMatchRule, f TaskFacts, image string) (int, []string, error) {
	values := map[string][]string{
		"project":           {f.Project},
		"project_id":        {f.ProjectID},
		"script.repository": {f.Repository},
		"script.branch":     {f.Branch},
		"script.binary":     {f.Binary},
		"user_id":           {f.UserID},
		"container":         {image},
		"tags":              f.Tags,
	}
	var warnings []string
rules:
	for i, r := range rules {
		if len(r.Match) == 0 {
			continue
		}
		keys := make([]string, 0, len(r.Match))
		for k := range r.Match {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.HasPrefix(k, "script.requirements.") {
				warnings = append(warnings, fmt.Sprintf("%s.match.%s: matching on requirements is not supported by this agent, so the rule was skipped; match on project, script.repository, tags, ...", r.Key, k))
				continue rules
			}
			if _, ok := values[k]; !ok {
				return -1, nil, fmt.Errorf("%s.match.%s: unknown match term; use one of %s", r.Key, k, strings.Join(matchTerms, ", "))
			}
		}
		for _, k := range keys {
			for _, term := range r.Match[k] {
				if term == "" {
					continue
				}
				re, err := regexp.Compile(term)
				if err != nil {
					return -1, nil, fmt.Errorf("%s.match.%s: regex %q does not compile (%v); fix it (Go RE2 syntax: no lookarounds or backreferences)", r.Key, k, term, reErr(err))
				}
				found := false
				for _, v := range values[k] {
					if re.MatchString(v) {
						found = true
						break
					}
				}
				if !found {
					continue rules
				}
			}
		}
		return i, warnings, nil
	}
	return -1, warnings, nil
}

// reErr is the reason of a regexp error without the repeated expression.
func reErr(err error) string {
	var e *syntax.Error
	if errors.As(err, &e) {
		return string(e.Code)
	}
	return err.Error()
}

// pyList renders a list the way Python prints one: ['a', 'b'].
func pyList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = pyRepr(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyRepr quotes a string like Python's repr: single quotes unless the string
// holds one and no double quote.
func pyRepr(s string) string {
	quote := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)+0x100, 16)[1:])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}
