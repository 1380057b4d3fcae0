package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// memInfo is what one process costs, from /proc/<pid>/smaps_rollup and
// /proc/<pid>/stat. All sizes are in kB.
type memInfo struct {
	Rss, Pss, PssAnon, PssFile int64
	PrivateClean, PrivateDirty int64
	MajorFaults, MinorFaults   int64
}

// USS is the memory only this process holds: what one more agent costs.
func (m memInfo) USS() int64 { return m.PrivateClean + m.PrivateDirty }

func (m *memInfo) add(o memInfo) {
	m.Rss += o.Rss
	m.Pss += o.Pss
	m.PssAnon += o.PssAnon
	m.PssFile += o.PssFile
	m.PrivateClean += o.PrivateClean
	m.PrivateDirty += o.PrivateDirty
	m.MajorFaults += o.MajorFaults
	m.MinorFaults += o.MinorFaults
}

// readMemInfo reads smaps_rollup and the fault counters of pid.
func readMemInfo(pid int) (memInfo, error) {
	var m memInfo
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	if err := parseSmapsRollup(b, &m); err != nil {
		return m, err
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return m, err
	}
	m.MinorFaults, m.MajorFaults, err = parseFaults(st)
	return m, err
}

// parseSmapsRollup fills the sizes of m from a smaps_rollup text.
func parseSmapsRollup(b []byte, m *memInfo) error {
	fields := map[string]*int64{
		"Rss": &m.Rss, "Pss": &m.Pss, "Pss_Anon": &m.PssAnon, "Pss_File": &m.PssFile,
		"Private_Clean": &m.PrivateClean, "Private_Dirty": &m.PrivateDirty,
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		p, want := fields[k]
		if !ok || !want {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("smaps_rollup %s %q: %w", k, v, err)
		}
		*p = n
		found++
	}
	if found < 4 { // Pss_Anon and Pss_File are missing before Linux 5.13
		return fmt.Errorf("smaps_rollup has no Rss/Pss/Private_* lines")
	}
	return nil
}

// parseFaults returns minflt and majflt (fields 10 and 12) of a
// /proc/<pid>/stat text.
func parseFaults(b []byte) (minflt, majflt int64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc stat without comm")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 10 {
		return 0, 0, fmt.Errorf("/proc stat has %d fields after comm", len(f))
	}
	if minflt, err = strconv.ParseInt(f[7], 10, 64); err != nil {
		return 0, 0, err
	}
	if majflt, err = strconv.ParseInt(f[9], 10, 64); err != nil {
		return 0, 0, err
	}
	return minflt, majflt, nil
}

// phaseFleet runs, for each fleet size, that many idle agents of the one
// binary against the one emulator (each its own worker id, all on the bench
// queue, as agent-provision lays them out on a GPU host), and reports what
// users pay for them: the PSS total (shared binary pages split between the
// agents), the private memory (USS) one more agent costs, and the major page
// faults the fleet takes during an idle window.
func (h *harness) phaseFleet(ctx context.Context) error {
	for _, n := range h.cfg.FleetSizes {
		if err := h.fleet(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) fleet(ctx context.Context, n int) error {
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	var agents []*agentProc
	defer func() {
		for _, a := range agents {
			_ = a.stop(ctx)
		}
	}()
	for i := range n {
		a, err := h.startAgent(fmt.Sprintf("fleet%d-%d", n, i),
			fmt.Sprintf("CLEARML_WORKER_ID=%s-fleet%d-%d", h.workerID, n, i))
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}
	// Wait until every agent registered.
	prefix := fmt.Sprintf("%s-fleet%d-", h.workerID, n)
	registered := func() int {
		k := 0
		for _, w := range h.srv.Workers() {
			if strings.HasPrefix(w.ID, prefix) {
				k++
			}
		}
		return k
	}
	if !waitUntil(ctx, 60*time.Second, func() bool { return registered() == n }) {
		return fmt.Errorf("only %d of %d agents registered in 60 s; first agent's log ends: %s",
			registered(), n, agents[0].tail(5))
	}
	if !sleepUntil(ctx, time.Now().Add(h.cfg.FleetSettle)) {
		return ctx.Err()
	}
	sample := func() (memInfo, []memInfo, error) {
		var total memInfo
		var each []memInfo
		for _, a := range agents {
			m, err := readMemInfo(a.pid())
			if err != nil {
				return total, nil, fmt.Errorf("agent pid %d: %w; its log ends: %s", a.pid(), err, a.tail(5))
			}
			total.add(m)
			each = append(each, m)
		}
		return total, each, nil
	}
	before, _, err := sample()
	if err != nil {
		return err
	}
	if !sleepUntil(ctx, time.Now().Add(h.cfg.FleetWindow)) {
		return ctx.Err()
	}
	after, each, err := sample()
	if err != nil {
		return err
	}
	var maxUSS int64
	for _, m := range each {
		maxUSS = max(maxUSS, m.USS())
	}
	label := fmt.Sprintf("%d idle agent(s)", n)
	target := ""
	if n == 8 {
		target = "<= 24 MiB"
	}
	h.add(label+": PSS total", mib(after.Pss), target,
		fmt.Sprintf("anon %s + file %s; RSS total %s; %s after settling", mib(after.PssAnon), mib(after.PssFile),
			mib(after.Rss), h.cfg.FleetSettle+h.cfg.FleetWindow))
	h.add(label+": USS per agent", mib(after.USS()/int64(n)), "",
		fmt.Sprintf("mean of Private_Clean+Private_Dirty, max %s (private clean %s, dirty %s in total)",
			mib(maxUSS), mib(after.PrivateClean), mib(after.PrivateDirty)))
	h.add(label+": major faults idle", strconv.FormatInt(after.MajorFaults-before.MajorFaults, 10), "0",
		fmt.Sprintf("all agents, %s window (minor faults %d)", h.cfg.FleetWindow, after.MinorFaults-before.MinorFaults))
	return nil
}
