package docker

import (
	"cmp"
	"fmt"
	"regexp"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// mergeArgs combines the administrator's extra arguments with the chosen
// image's arguments the way the Python agent does (reference section 4.2 step
// 3):
//
//  1. agent.docker_args_filters: each option of the chosen arguments is kept
//     only when one of the regexes matches it as written ("--env", "-e",
//     "--ipc=host"), anchored at its start;
//  2. agent.forbidden_docker_args (default entrypoint) are dropped from both;
//  3. with agent.docker_args_extra_precedes_task (default) the extra arguments
//     come first, and a agent.protected_docker_extra_args switch (privileged,
//     security-opt, network, ipc) they set drops the same switch from the
//     chosen arguments; without it, the other way round.
//
// Every dropped option is a warning for the task log.
func mergeArgs(extra, chosen []Arg, s config.DockerSettings) ([]Arg, []string, error) {
	var warnings []string
	if len(s.ArgsFilters) > 0 && len(chosen) > 0 {
		var res []*regexp.Regexp
		for _, f := range s.ArgsFilters {
			re, err := regexp.Compile(`^(?:` + f + `)`)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: regex %q does not compile (%s); fix it (Go RE2 syntax: no lookarounds or backreferences)",
					cmp.Or(s.ArgsFiltersOrigin, "agent.docker_args_filters"), f, reErr(err))
			}
			res = append(res, re)
		}
		kept := chosen[:0:0]
		for _, a := range chosen {
			ok := false
			for _, re := range res {
				if re.MatchString(a.Text) {
					ok = true
					break
				}
			}
			if ok {
				kept = append(kept, a)
				continue
			}
			warnings = append(warnings, fmt.Sprintf("docker argument %s in %s was dropped: it matches none of %s",
				quoteArg(a), a.Source.Name, cmp.Or(s.ArgsFiltersOrigin, "agent.docker_args_filters")))
		}
		chosen = kept
	}

	forbidden := map[string]bool{}
	for _, f := range s.ForbiddenArgs {
		forbidden[canonicalFlag(f)] = true
	}
	drop := func(args []Arg) []Arg {
		kept := args[:0:0]
		for _, a := range args {
			if forbidden[a.Flag] {
				warnings = append(warnings, fmt.Sprintf("docker argument %s in %s was dropped: agent.forbidden_docker_args forbids --%s",
					quoteArg(a), a.Source.Name, a.Flag))
				continue
			}
			kept = append(kept, a)
		}
		return kept
	}
	extra, chosen = drop(extra), drop(chosen)

	protected := map[string]bool{}
	for _, p := range s.ProtectedExtraArgs {
		protected[canonicalFlag(p)] = true
	}
	first, second := extra, chosen
	if !s.ExtraPrecedesTask {
		first, second = chosen, extra
	}
	set := switchesOf(first)
	kept := second[:0:0]
	for _, a := range second {
		if protected[a.Flag] && set[a.Flag] {
			warnings = append(warnings, fmt.Sprintf("docker argument %s in %s was dropped: %s already sets --%s (agent.protected_docker_extra_args)",
				quoteArg(a), a.Source.Name, firstSource(first, a.Flag), a.Flag))
			continue
		}
		kept = append(kept, a)
	}
	return append(append([]Arg(nil), first...), kept...), warnings, nil
}

func firstSource(args []Arg, flag string) string {
	for _, a := range args {
		if a.Flag == flag {
			return a.Source.Name
		}
	}
	return ""
}

// quoteArg is an option with its value as written, quoted, for messages;
// secret -e values are masked.
func quoteArg(a Arg) string {
	return fmt.Sprintf("%q", argText(a))
}
