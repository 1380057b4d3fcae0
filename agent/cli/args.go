package cli

import (
	"strconv"
	"strings"
)

// normalizeArgs accepts the Python agent's argparse forms, which kingpin does
// not parse by itself:
//   - several values after one flag: `--queue high low`, `--stop id1 id2`,
//     `--child-report-tags a b`;
//   - flags with an optional value: `--services-mode` alone or `--services-mode 5`,
//     `--stop` alone;
//   - `-d` after `daemon` means --detached (before it, --debug);
//   - `--docker` alone or followed by an image and its arguments
//     (`--docker nvidia/cuda:12 --ipc=host` needs quotes: "nvidia/cuda:12 --ipc=host"),
//     for daemon and execute.
func normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args)+4)
	inDaemon, inExecute := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		switch {
		case (a == "daemon" || a == "doctor") && !inDaemon && !inExecute:
			inDaemon = true
			out = append(out, a)
		case a == "execute" && !inDaemon && !inExecute:
			inExecute = true
			out = append(out, a)
		case (inDaemon || inExecute) && a == "--docker":
			var vals []string
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				vals = append(vals, args[i])
			}
			out = append(out, a+"="+strings.Join(vals, " "))
		case inDaemon && a == "-d":
			out = append(out, "--detached")
		case inDaemon && (a == "--queue" || a == "--stop" || a == "--child-report-tags"):
			n := 0
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				n++
				out = append(out, a+"="+args[i])
			}
			if n == 0 {
				out = append(out, a+"=")
			}
		case inDaemon && a == "--services-mode":
			if i+1 < len(args) {
				if _, err := strconv.Atoi(args[i+1]); err == nil {
					i++
					out = append(out, a+"="+args[i])
					continue
				}
			}
			out = append(out, a+"=-1")
		default:
			out = append(out, a)
		}
	}
	return out
}
