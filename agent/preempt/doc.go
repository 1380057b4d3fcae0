// Package preempt watches a cloud's termination notice for the VM the agent
// runs on, so the daemon can drain (stop taking work, abort and requeue the
// running task, unregister) before the VM disappears.
//
// Providers and what counts as a notice:
//   - gce: GET {base}/computeMetadata/v1/instance/preempted with
//     "Metadata-Flavor: Google"; the body TRUE is a notice, FALSE is not.
//     Default base http://metadata.google.internal.
//   - aws: GET {base}/latest/meta-data/spot/instance-action; 404 is no notice,
//     200 with {"action":"terminate|stop|hibernate","time":"..."} is one.
//     IMDSv2 first (PUT {base}/latest/api/token, then the token header on
//     every GET; the token is renewed before it expires and after a 401);
//     IMDSv1 when the token PUT fails. Default base http://169.254.169.254.
//   - azure: GET {base}/metadata/scheduledevents?api-version=2020-07-01 with
//     "Metadata: true"; an event of type Preempt or Terminate is a notice
//     (when the VM's name is known, only events whose Resources name it or
//     are empty). The name comes from Options.VMName or, when empty, from
//     {base}/metadata/instance/compute/name. Default base http://169.254.169.254.
//   - auto: probe the three endpoints at start and watch the one that
//     answers like its cloud; none answering means no watch (bare metal).
//   - off (the default): no watch.
//
// Polling never blocks the caller: Watch returns at once and polls in its
// own goroutine, every HTTP attempt has its own timeout, and an answer that
// is garbage, an error status or no answer at all is ignored with one
// warning (repeated only when the kind of failure changes, and a line when
// the endpoint answers again); polling goes on. Requests never go through an
// HTTP proxy (metadata endpoints are link-local).
//
// The daemon's settings: agent.preemption.provider (ParseProvider),
// agent.preemption.endpoint (ParseEndpoint) and
// agent.preemption.poll_interval_sec (ParsePollInterval).
package preempt
