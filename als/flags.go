package als

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
)

// responseFlags renders flags exactly as Envoy's %RESPONSE_FLAGS%: the
// short codes in the order of Envoy's ALL_RESPONSE_STRINGS_FLAGS
// (source/common/stream_info/utility.h), comma-separated, "-" when none.
// The order is not the proto's field order: DC comes after RLSE.
func responseFlags(f *accesslogv3.ResponseFlags) string {
	if f == nil {
		return "-"
	}
	var buf [96]byte
	b := buf[:0]
	add := func(set bool, code string) {
		if !set {
			return
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, code...)
	}
	add(f.FailedLocalHealthcheck, "LH")
	add(f.NoHealthyUpstream, "UH")
	add(f.UpstreamRequestTimeout, "UT")
	add(f.LocalReset, "LR")
	add(f.UpstreamRemoteReset, "UR")
	add(f.UpstreamConnectionFailure, "UF")
	add(f.UpstreamConnectionTermination, "UC")
	add(f.UpstreamOverflow, "UO")
	add(f.NoRouteFound, "NR")
	add(f.DelayInjected, "DI")
	add(f.FaultInjected, "FI")
	add(f.RateLimited, "RL")
	// Envoy sets unauthorized_details only for UnauthorizedExternalService.
	add(f.UnauthorizedDetails != nil, "UAEX")
	add(f.RateLimitServiceError, "RLSE")
	add(f.DownstreamConnectionTermination, "DC")
	add(f.UpstreamRetryLimitExceeded, "URX")
	add(f.StreamIdleTimeout, "SI")
	add(f.InvalidEnvoyRequestHeaders, "IH")
	add(f.DownstreamProtocolError, "DPE")
	add(f.UpstreamMaxStreamDurationReached, "UMSDR")
	add(f.ResponseFromCacheFilter, "RFCF")
	add(f.NoFilterConfigFound, "NFCF")
	add(f.DurationTimeout, "DT")
	add(f.UpstreamProtocolError, "UPE")
	add(f.NoClusterFound, "NC")
	add(f.OverloadManager, "OM")
	add(f.DnsResolutionFailure, "DF")
	add(f.DownstreamRemoteReset, "DR")
	if len(b) == 0 {
		return "-"
	}
	return flagString(b)
}

// flagString interns the common single-flag results so the hot path does
// not allocate for them.
func flagString(b []byte) string {
	switch string(b) { // no allocation: the compiler optimises string(b) in a switch
	case "UF":
		return "UF"
	case "UH":
		return "UH"
	case "UT":
		return "UT"
	case "URX":
		return "URX"
	case "UC":
		return "UC"
	case "NR":
		return "NR"
	case "DC":
		return "DC"
	case "UO":
		return "UO"
	case "RL":
		return "RL"
	case "FI":
		return "FI"
	case "UF,URX":
		return "UF,URX"
	}
	return string(b)
}
