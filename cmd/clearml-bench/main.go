package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/gpufleet/clearml-agent-go/internal/bench"
)

func main() {
	var cfg bench.Config
	flag.StringVar(&cfg.AgentBin, "agent", "clearml-agent", "agent binary that fills {agent} in $AGENT_CMD")
	flag.StringVar(&cfg.Python, "python", "python3", "python of the bench tasks (script.binary)")
	flag.IntVar(&cfg.Starts, "starts", 3, "cold starts timed to workers.register and READY=1")
	flag.DurationVar(&cfg.IdleSettle, "idle-settle", 0, "idle time before the RSS sample (default 10s)")
	flag.DurationVar(&cfg.IdleWindow, "idle-window", 0, "window of the idle request count (default 30s)")
	flag.IntVar(&cfg.Repeats, "repeats", 5, "warm get_next_task -> first line runs")
	flag.IntVar(&cfg.Lines, "lines", 1_000_000, "lines printed by the log relay task")
	flag.StringVar(&cfg.FastPoll, "fast-poll", "0.5", "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC of the task phases (not the idle one)")
	flag.BoolVar(&cfg.NoRepo, "no-repo", false, "put the task scripts in script.diff instead of a git repository")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the temporary directory (agent logs, clearml.conf)")
	fleet := flag.String("fleet", "1,8", "comma-separated fleet sizes: idle agents run side by side for the PSS/USS/fault figures")
	flag.DurationVar(&cfg.FleetSettle, "fleet-settle", 0, "idle time after the fleet registered, before the first sample (default 15s)")
	flag.DurationVar(&cfg.FleetWindow, "fleet-window", 0, "idle window in which major faults are counted (default 60s)")
	phases := flag.String("phases", "", "comma-separated subset of start,idle,fleet,tasks,docker (default all)")
	flag.StringVar(&cfg.DockerHost, "docker-host", "", "engine of the docker phase (default $DOCKER_HOST, else "+bench.DefaultDockerHost+")")
	flag.StringVar(&cfg.DockerPython, "docker-python", bench.DefaultDockerPython, "image of the docker phase's python task (present in the engine)")
	flag.StringVar(&cfg.DockerBash, "docker-bash", bench.DefaultDockerBash, "image of the docker phase's bash task (present in the engine)")
	flag.StringVar(&cfg.DockerFlags, "docker-flags", bench.DefaultDockerFlags, "appended to $AGENT_CMD for the docker phase's agent")
	flag.StringVar(&cfg.DockerArgs, "docker-args", bench.DefaultDockerArgs, "CLEARML_AGENT_EXTRA_DOCKER_ARGS of the docker phase's agent")
	flag.StringVar(&cfg.DockerBinary, "docker-binary", "", "CLEARML_AGENT_DOCKER_BINARY: the static agent for the containers (default: the agent finds <agent>-static)")
	flag.Parse()
	for _, s := range strings.Split(*fleet, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "clearml-bench: -fleet %q: want comma-separated agent counts such as 1,8\n", *fleet)
			os.Exit(2)
		}
		cfg.FleetSizes = append(cfg.FleetSizes, n)
	}
	if *phases != "" {
		cfg.Phases = strings.Split(*phases, ",")
	}
	cfg.AgentCmd = os.Getenv("AGENT_CMD")
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	figs, err := bench.Run(ctx, cfg)
	if perr := bench.Print(os.Stdout, figs); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clearml-bench:", err)
		os.Exit(1)
	}
}
