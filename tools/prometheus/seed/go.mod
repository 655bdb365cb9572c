module trace-stack/prometheus

go 1.21

require github.com/prometheus/prometheus v0.48.0

replace (
	k8s.io/klog => github.com/simonpasquier/klog-gokit v0.3.0
	k8s.io/klog/v2 => github.com/simonpasquier/klog-gokit/v3 v3.3.0
)
