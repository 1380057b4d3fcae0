package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ALERTS.md must stay true to the code: its YAML blocks parse, every rule
// names only metrics the agent exports, and the table lists every metric.
func TestAlertsDoc(t *testing.T) {
	doc, err := os.ReadFile("ALERTS.md")
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	m.SetGPUBusy(0, false) // vec metrics appear once they have a series
	m.ServerError("x")
	m.SetupPhase(PhaseClone, 0)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), Namespace+"_") {
			exported[f.GetName()] = true
		}
	}
	if len(exported) != 10 {
		t.Errorf("%d clearml_agent metrics exported; the test expects 10: %v", len(exported), exported)
	}
	for name := range exported {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("ALERTS.md's table lacks %s", name)
		}
	}

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("%d yaml blocks in ALERTS.md; want the scrape config and the rules", len(blocks))
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	var scrape map[string]any
	if err := yaml.Unmarshal([]byte(blocks[0][1]), &scrape); err != nil || scrape["scrape_configs"] == nil {
		t.Errorf("scrape config block: %v", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(blocks[1][1]))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("rules block: %v", err)
	}
	if len(rules.Groups) != 1 {
		t.Fatalf("%d rule groups", len(rules.Groups))
	}
	metricRe := regexp.MustCompile(`\b` + Namespace + `_[a-z_]+`)
	var exprs []string
	for _, r := range rules.Groups[0].Rules {
		if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
			t.Errorf("rule %+v: want alert, expr, severity and summary", r)
		}
		if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
			t.Errorf("rule %s: unbalanced parentheses in %q", r.Alert, r.Expr)
		}
		for _, name := range metricRe.FindAllString(r.Expr+" "+r.Annotations["description"], -1) {
			if !exported[name] {
				t.Errorf("rule %s names %s, which the agent does not export", r.Alert, name)
			}
		}
		exprs = append(exprs, r.Alert+": "+r.Expr+" for "+r.For)
	}
	// The alerts the issue asks for.
	for _, want := range []string{
		`up{job="clearml-agent"} == 0`,
		"clearml_agent_seconds_since_last_poll{job=\"clearml-agent\"} > 300",
		`outcome="failed"`,
		"clearml_agent_gpu_busy{job=\"clearml-agent\"} == 1 for 30m",
		"clearml_agent_log_lines_spooled_total",
		"clearml_agent_log_lines_dropped_total{job=\"clearml-agent\"}[1h]) > 0",
		"rate(clearml_agent_server_errors_total",
	} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no alert rule with %q", want)
		}
	}
}
