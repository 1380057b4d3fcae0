package preempt

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths below the base URL.
const (
	gcePath          = "/computeMetadata/v1/instance/preempted"
	awsTokenPath     = "/latest/api/token"
	awsActionPath    = "/latest/meta-data/spot/instance-action"
	awsIDPath        = "/latest/meta-data/instance-id"
	azureEventsPath  = "/metadata/scheduledevents?api-version=2020-07-01"
	azureVMNamePath  = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
	awsTokenTTL      = 6 * time.Hour // the longest IMDSv2 allows
	awsTokenMargin   = time.Minute   // renew this long before the token expires
	azureNameLookups = 3             // polls that may try to learn the VM's name
)

var (
	gceHeader   = map[string]string{"Metadata-Flavor": "Google"}
	azureHeader = map[string]string{"Metadata": "true"}
)

// ---- GCE ----

type gcePoller struct {
	w   *watcher
	url string
}

func (g *gcePoller) name() string   { return ProviderGCE }
func (g *gcePoller) target() string { return g.url }

func (g *gcePoller) poll(ctx context.Context) (*Notice, error) {
	code, _, body, err := g.w.do(ctx, http.MethodGet, g.url, gceHeader)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, badStatus(code, body)
	}
	switch strings.ToUpper(strings.TrimSpace(string(body))) {
	case "TRUE":
		return &Notice{Provider: ProviderGCE, Reason: "instance preempted (gce)"}, nil
	case "FALSE":
		return nil, nil
	}
	return nil, garbage("answer %s is neither TRUE nor FALSE", snippet(body))
}

// ---- AWS ----

type awsPoller struct {
	w     *watcher
	base  string
	ttl   time.Duration
	token string
	exp   time.Time // renew the token from here on
	v1    bool      // the token request failed: IMDSv1 until a 401 says otherwise
}

func (a *awsPoller) name() string   { return ProviderAWS }
func (a *awsPoller) target() string { return a.base + awsActionPath }

func (a *awsPoller) fetchToken(ctx context.Context) error {
	a.token = ""
	hdr := map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": strconv.Itoa(int(a.ttl / time.Second))}
	code, _, body, err := a.w.do(ctx, http.MethodPut, a.base+awsTokenPath, hdr)
	if err != nil {
		return err
	}
	tok := strings.TrimSpace(string(body))
	if code != http.StatusOK {
		return badStatus(code, body)
	}
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return garbage("token answer %s is not a token", snippet(body))
	}
	a.token = tok
	a.exp = a.w.now().Add(a.ttl - awsTokenMargin)
	return nil
}

func (a *awsPoller) get(ctx context.Context) (int, []byte, error) {
	var hdr map[string]string
	if a.token != "" {
		hdr = map[string]string{"X-aws-ec2-metadata-token": a.token}
	}
	code, _, body, err := a.w.do(ctx, http.MethodGet, a.base+awsActionPath, hdr)
	return code, body, err
}

func (a *awsPoller) poll(ctx context.Context) (*Notice, error) {
	if !a.v1 && (a.token == "" || !a.w.now().Before(a.exp)) {
		if err := a.fetchToken(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			a.v1 = true
			a.w.logf("preemption: aws IMDSv2 token request %s failed (%v); using IMDSv1", a.base+awsTokenPath, err)
		}
	}
	code, body, err := a.get(ctx)
	if err != nil {
		return nil, err
	}
	if code == http.StatusUnauthorized {
		// The token expired or was revoked, or IMDSv1 is disabled: get a
		// fresh token and ask again.
		a.v1 = false
		if terr := a.fetchToken(ctx); terr != nil {
			return nil, &answerError{kind: "HTTP 401", msg: fmt.Sprintf("HTTP 401 and no IMDSv2 token (%v)", terr)}
		}
		if code, body, err = a.get(ctx); err != nil {
			return nil, err
		}
	}
	switch code {
	case http.StatusNotFound:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, badStatus(code, body)
	}
	var ia struct {
		Action string `json:"action"`
		Time   string `json:"time"`
	}
	if err := json.Unmarshal(body, &ia); err != nil || strings.TrimSpace(ia.Action) == "" {
		return nil, garbage("answer %s is not an instance-action document", snippet(body))
	}
	n := &Notice{Provider: ProviderAWS, Reason: "spot instance-action " + ia.Action}
	if ia.Time != "" {
		n.Reason += " at " + ia.Time
		if t, err := time.Parse(time.RFC3339, ia.Time); err == nil {
			n.At = t
		}
	}
	n.Reason += " (aws)"
	return n, nil
}

// ---- Azure ----

type azurePoller struct {
	w           *watcher
	base        string
	vmName      string
	nameLookups int // name lookups tried; azureNameLookups means give up
}

type azureEvent struct {
	EventID     string   `json:"EventId"`
	EventType   string   `json:"EventType"`
	EventStatus string   `json:"EventStatus"`
	Resources   []string `json:"Resources"`
	NotBefore   string   `json:"NotBefore"`
}

type azureDoc struct {
	DocumentIncarnation *int         `json:"DocumentIncarnation"`
	Events              []azureEvent `json:"Events"`
}

func (z *azurePoller) name() string   { return ProviderAzure }
func (z *azurePoller) target() string { return z.base + azureEventsPath }

// lookupName learns this VM's name, so that only its events count.
func (z *azurePoller) lookupName(ctx context.Context) {
	if z.vmName != "" || z.nameLookups >= azureNameLookups {
		return
	}
	z.nameLookups++
	code, _, body, err := z.w.do(ctx, http.MethodGet, z.base+azureVMNamePath, azureHeader)
	name := strings.TrimSpace(string(body))
	switch {
	case err == nil && code == http.StatusOK && name != "" && !strings.ContainsAny(name, "\r\n{"):
		z.vmName = name
		return
	case err == nil:
		z.nameLookups = azureNameLookups // a definite answer: do not ask again
		err = fmt.Errorf("HTTP %d %s", code, snippet(body))
	}
	if z.nameLookups >= azureNameLookups && ctx.Err() == nil {
		z.w.logf("preemption: azure: this VM's name is unknown (%s: %v); every Preempt or Terminate event counts", z.base+azureVMNamePath, err)
	}
}

func (z *azurePoller) poll(ctx context.Context) (*Notice, error) {
	z.lookupName(ctx)
	code, _, body, err := z.w.do(ctx, http.MethodGet, z.base+azureEventsPath, azureHeader)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, badStatus(code, body)
	}
	var doc azureDoc
	if err := json.Unmarshal(body, &doc); err != nil || doc.DocumentIncarnation == nil {
		return nil, garbage("answer %s is not a scheduled events document", snippet(body))
	}
	for _, e := range doc.Events {
		if !strings.EqualFold(e.EventType, "Preempt") && !strings.EqualFold(e.EventType, "Terminate") {
			continue
		}
		if !z.concernsMe(e) {
			continue
		}
		n := &Notice{Provider: ProviderAzure, Reason: "scheduled event " + e.EventType}
		if e.EventID != "" {
			n.Reason += " (EventId " + e.EventID + ")"
		}
		if e.NotBefore != "" {
			n.Reason += " not before " + e.NotBefore
			if t, err := http.ParseTime(e.NotBefore); err == nil {
				n.At = t
			}
		}
		n.Reason += " (azure)"
		return n, nil
	}
	return nil, nil
}

func (z *azurePoller) concernsMe(e azureEvent) bool {
	if z.vmName == "" || len(e.Resources) == 0 {
		return true
	}
	for _, r := range e.Resources {
		if strings.EqualFold(strings.TrimSpace(r), z.vmName) {
			return true
		}
	}
	return false
}

// ---- auto ----

const detectRounds = 3

// detect finds the cloud whose metadata endpoint answers like it; nil when
// none does after a few rounds (bare metal) or ctx ends.
func (w *watcher) detect(ctx context.Context) poller {
	for round := 1; ; round++ {
		if p := w.probeAll(ctx); p != "" {
			w.logf("preemption: auto: the %s metadata service answers", p)
			return w.newPoller(p)
		}
		if ctx.Err() != nil {
			return nil
		}
		if round == detectRounds {
			w.logf("preemption: auto: no cloud metadata service answered (gce, aws, azure); no termination watch; set %s to a provider to force one", KeyProvider)
			return nil
		}
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (w *watcher) probeAll(ctx context.Context) string {
	order := []string{ProviderGCE, ProviderAWS, ProviderAzure}
	ok := make([]bool, len(order))
	var wg sync.WaitGroup
	for i, p := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i] = w.probe(ctx, p)
		}()
	}
	wg.Wait()
	for i, p := range order {
		if ok[i] {
			return p
		}
	}
	return ""
}

func (w *watcher) probe(ctx context.Context, provider string) bool {
	base := w.base(provider)
	switch provider {
	case ProviderGCE:
		code, hdr, body, err := w.do(ctx, http.MethodGet, base+gcePath, gceHeader)
		b := strings.ToUpper(strings.TrimSpace(string(body)))
		return err == nil && code == http.StatusOK && hdr.Get("Metadata-Flavor") == "Google" && (b == "TRUE" || b == "FALSE")
	case ProviderAWS:
		code, _, body, err := w.do(ctx, http.MethodPut, base+awsTokenPath,
			map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": strconv.Itoa(int(awsTokenTTL / time.Second))})
		if err == nil && code == http.StatusOK && strings.TrimSpace(string(body)) != "" {
			return true
		}
		code, _, body, err = w.do(ctx, http.MethodGet, base+awsIDPath, nil)
		return err == nil && code == http.StatusOK && strings.HasPrefix(strings.TrimSpace(string(body)), "i-")
	case ProviderAzure:
		code, _, body, err := w.do(ctx, http.MethodGet, base+azureEventsPath, azureHeader)
		var doc azureDoc
		return err == nil && code == http.StatusOK && json.Unmarshal(body, &doc) == nil && doc.DocumentIncarnation != nil
	}
	return false
}
