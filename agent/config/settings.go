package config

import (
	"strings"
	"time"
)

// APISettings is the typed view of the api section.
type APISettings struct {
	APIServer                string // api.api_server (falls back to api.host), trailing "/" stripped
	WebServer                string
	FilesServer              string
	AccessKey                string
	SecretKey                string
	VerifyCertificate        bool
	DefaultMethod            string // api.http.default_method: get, post or put
	TokenExpirationThreshold time.Duration
}

// PackageManager is agent.package_manager.
type PackageManager struct {
	Type                      string // pip, uv or poetry
	ExtraIndexURL             []string
	ExtraPipInstallFlags      []string
	SystemSitePackages        bool
	ForceUpgrade              bool
	PipVersion                []string // specs for pip itself, e.g. "<24"; empty leaves pip alone
	PriorityPackages          []string
	PriorityOptionalPackages  []string
	ForceRepoRequirementsTxt  bool
	ForceOriginalRequirements bool
	PoetryInstallExtraArgs    []string
	InstallTimeout            time.Duration // install_timeout_sec (ours): the whole venv build; 0 = no limit
}

// VenvsCache is agent.venvs_cache.
type VenvsCache struct {
	Path                 string // "" when the cache is disabled (no path)
	MaxEntries           int
	FreeSpaceThresholdGB float64
}

// DefaultDocker is agent.default_docker.
type DefaultDocker struct {
	Image     string
	Arguments []string
}

// AgentSettings is the typed view of the agent section. Paths have ~ expanded.
type AgentSettings struct {
	WorkerID   string
	WorkerName string

	GitUser             string
	GitPass             string
	GitHost             string
	ForceGitSSHProtocol bool
	ForceGitSSHUser     string
	ForceGitSSHPort     int
	GitFetchArgs        []string
	TranslateSSH        bool
	GitTimeout          time.Duration // agent.git_timeout_sec (ours): each clone or fetch; 0 = no limit

	PythonBinary                 string
	DefaultPython                string
	IgnoreRequestedPythonVersion bool
	PackageManager               PackageManager

	VenvsDir         string
	VenvsCache       VenvsCache
	VCSCacheEnabled  bool
	VCSCachePath     string
	PipDownloadCache string // "" when disabled

	DockerForcePull      bool
	DockerPipCache       string
	DockerAptCache       string
	DefaultDocker        DefaultDocker
	ExtraDockerArguments []string

	ReloadConfig           bool
	CPUOnly                bool
	CUDAVersion            string
	CrashOnException       bool
	SuppressCarriageReturn bool
	TaskPingInterval       time.Duration // agent.task_ping_interval_sec
	PollingInterval        time.Duration // agent.polling_interval_sec
	StatusReportInterval   time.Duration // agent.status_report_interval_sec
	AbortGracePeriod       time.Duration // agent.abort_grace_period_sec (ours)
	DrainTimeout           time.Duration // agent.drain_timeout_sec (ours); 0 = wait forever
	GPUBusyPolicy          string        // agent.gpu_busy_policy (ours): wait, ignore or MiB; gpu.ParseBusyPolicy checks it
	DiskMinFreeGB          float64       // agent.disk_min_free_gb (ours); 0 = no floor; diskguard.LoadSettings checks it
	Environment            map[string]string
}

// API returns the typed api section.
func (c *Config) API() APISettings {
	s := APISettings{
		APIServer:                strings.TrimRight(c.str("api.api_server"), "/"),
		WebServer:                strings.TrimRight(c.str("api.web_server"), "/"),
		FilesServer:              strings.TrimRight(c.str("api.files_server"), "/"),
		AccessKey:                c.str("api.credentials.access_key"),
		SecretKey:                c.str("api.credentials.secret_key"),
		VerifyCertificate:        c.boolOr("api.verify_certificate", true),
		DefaultMethod:            strings.ToLower(c.str("api.http.default_method")),
		TokenExpirationThreshold: c.secs("api.auth.token_expiration_threshold_sec", 43200*time.Second),
	}
	if s.APIServer == "" {
		s.APIServer = strings.TrimRight(c.str("api.host"), "/")
	}
	if s.DefaultMethod == "" {
		s.DefaultMethod = "get"
	}
	return s
}

// Agent returns the typed agent section.
func (c *Config) Agent() AgentSettings {
	a := AgentSettings{
		WorkerID:            c.str("agent.worker_id"),
		WorkerName:          c.str("agent.worker_name"),
		GitUser:             c.str("agent.git_user"),
		GitPass:             c.str("agent.git_pass"),
		GitHost:             c.str("agent.git_host"),
		ForceGitSSHProtocol: c.boolOr("agent.force_git_ssh_protocol", false),
		ForceGitSSHUser:     c.str("agent.force_git_ssh_user"),
		ForceGitSSHPort:     int(c.intOr("agent.force_git_ssh_port", 0)),
		GitFetchArgs:        c.strs("agent.git_fetch_args"),
		TranslateSSH:        c.boolOr("agent.translate_ssh", true),
		GitTimeout:          c.secs("agent.git_timeout_sec", 10*time.Minute),

		PythonBinary:                 c.path("agent.python_binary"),
		DefaultPython:                c.str("agent.default_python"),
		IgnoreRequestedPythonVersion: c.boolOr("agent.ignore_requested_python_version", false),
		PackageManager: PackageManager{
			Type:                      c.str("agent.package_manager.type"),
			ExtraIndexURL:             c.strs("agent.package_manager.extra_index_url"),
			ExtraPipInstallFlags:      c.strs("agent.package_manager.extra_pip_install_flags"),
			SystemSitePackages:        c.boolOr("agent.package_manager.system_site_packages", false),
			ForceUpgrade:              c.boolOr("agent.package_manager.force_upgrade", false),
			PipVersion:                c.strs("agent.package_manager.pip_version"),
			PriorityPackages:          c.strs("agent.package_manager.priority_packages"),
			PriorityOptionalPackages:  c.strs("agent.package_manager.priority_optional_packages"),
			ForceRepoRequirementsTxt:  c.boolOr("agent.package_manager.force_repo_requirements_txt", false),
			ForceOriginalRequirements: c.boolOr("agent.package_manager.force_original_requirements", false),
			PoetryInstallExtraArgs:    c.strs("agent.package_manager.poetry_install_extra_args"),
			InstallTimeout:            c.secs("agent.package_manager.install_timeout_sec", 30*time.Minute),
		},

		VenvsDir: c.path("agent.venvs_dir"),
		VenvsCache: VenvsCache{
			Path:                 c.path("agent.venvs_cache.path"),
			MaxEntries:           int(c.intOr("agent.venvs_cache.max_entries", 10)),
			FreeSpaceThresholdGB: c.floatOr("agent.venvs_cache.free_space_threshold_gb", 2.0),
		},
		VCSCacheEnabled: c.boolOr("agent.vcs_cache.enabled", true),
		VCSCachePath:    c.path("agent.vcs_cache.path"),

		DockerForcePull: c.boolOr("agent.docker_force_pull", false),
		DockerPipCache:  c.path("agent.docker_pip_cache"),
		DockerAptCache:  c.path("agent.docker_apt_cache"),
		DefaultDocker: DefaultDocker{
			Image:     c.str("agent.default_docker.image"),
			Arguments: c.strs("agent.default_docker.arguments"),
		},
		ExtraDockerArguments: c.strs("agent.extra_docker_arguments"),

		ReloadConfig:           c.boolOr("agent.reload_config", false),
		CPUOnly:                c.boolOr("agent.cpu_only", false),
		CUDAVersion:            c.str("agent.cuda_version"),
		CrashOnException:       c.boolOr("agent.crash_on_exception", false),
		SuppressCarriageReturn: c.boolOr("agent.suppress_carriage_return", true),
		TaskPingInterval:       c.secs("agent.task_ping_interval_sec", 60*time.Second),
		PollingInterval:        c.secs("agent.polling_interval_sec", 5*time.Second),
		StatusReportInterval:   c.secs("agent.status_report_interval_sec", 30*time.Second),
		AbortGracePeriod:       c.secs("agent.abort_grace_period_sec", 10*time.Second),
		DrainTimeout:           c.secs("agent.drain_timeout_sec", 0),
		GPUBusyPolicy:          c.strOr("agent.gpu_busy_policy", "wait"),
		DiskMinFreeGB:          c.floatOr("agent.disk_min_free_gb", 1.0),
		Environment:            c.StringMap("agent.environment"),
	}
	if enabled, ok := c.Bool("agent.pip_download_cache.enabled"); !ok || enabled {
		a.PipDownloadCache = c.path("agent.pip_download_cache.path")
	}
	return a
}

func (c *Config) str(path string) string {
	s, _ := c.String(path)
	return s
}

func (c *Config) strOr(path, def string) string {
	if s, ok := c.String(path); ok {
		return s
	}
	return def
}

func (c *Config) path(p string) string {
	s, _ := c.Path(p)
	return s
}

func (c *Config) strs(path string) []string {
	s, _ := c.Strings(path)
	return s
}

func (c *Config) boolOr(path string, def bool) bool {
	if b, ok := c.Bool(path); ok {
		return b
	}
	return def
}

func (c *Config) intOr(path string, def int64) int64 {
	if n, ok := c.Int(path); ok {
		return n
	}
	return def
}

func (c *Config) floatOr(path string, def float64) float64 {
	if f, ok := c.Float(path); ok {
		return f
	}
	return def
}

func (c *Config) secs(path string, def time.Duration) time.Duration {
	if d, ok := c.Duration(path); ok {
		return d
	}
	return def
}
