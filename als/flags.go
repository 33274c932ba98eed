package als

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
)

// flagMask holds Envoy response flags, bit N set for ResponseFlags proto
// field N (1..28). Envoy's %RESPONSE_FLAGS% renders them in the order of
// ALL_RESPONSE_STRINGS_FLAGS (source/common/stream_info/utility.h), which
// is the proto's field order, so rendering walks the bits upwards.
type flagMask uint32

// flagCodes are the short codes by proto field number.
var flagCodes = [...]string{
	1: "LH", 2: "UH", 3: "UT", 4: "LR", 5: "UR", 6: "UF", 7: "UC", 8: "UO", 9: "NR", 10: "DI",
	11: "FI", 12: "RL", 13: "UAEX", 14: "RLSE", 15: "DC", 16: "URX", 17: "SI", 18: "IH", 19: "DPE",
	20: "UMSDR", 21: "RFCF", 22: "NFCF", 23: "DT", 24: "UPE", 25: "NC", 26: "OM", 27: "DF", 28: "DR",
}

const maxFlagField = 28

// String renders the mask as %RESPONSE_FLAGS% does: comma-separated short
// codes, "-" when none.
func (m flagMask) String() string {
	if m == 0 {
		return "-"
	}
	if m&(m-1) == 0 { // one flag: no allocation
		for i := 1; i <= maxFlagField; i++ {
			if m == 1<<i {
				return flagCodes[i]
			}
		}
	}
	if m == 1<<6|1<<16 {
		return "UF,URX" // the most common pair: a failed connection, retried
	}
	var buf [96]byte
	b := buf[:0]
	for i := 1; i <= maxFlagField; i++ {
		if m&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, flagCodes[i]...)
		}
	}
	return string(b)
}

// maskOf converts the generated type (used by tests and the reference
// converter).
func maskOf(f *accesslogv3.ResponseFlags) flagMask {
	if f == nil {
		return 0
	}
	var m flagMask
	set := func(field int, v bool) {
		if v {
			m |= 1 << field
		}
	}
	set(1, f.FailedLocalHealthcheck)
	set(2, f.NoHealthyUpstream)
	set(3, f.UpstreamRequestTimeout)
	set(4, f.LocalReset)
	set(5, f.UpstreamRemoteReset)
	set(6, f.UpstreamConnectionFailure)
	set(7, f.UpstreamConnectionTermination)
	set(8, f.UpstreamOverflow)
	set(9, f.NoRouteFound)
	set(10, f.DelayInjected)
	set(11, f.FaultInjected)
	set(12, f.RateLimited)
	set(13, f.UnauthorizedDetails != nil) // Envoy sets it only for UnauthorizedExternalService
	set(14, f.RateLimitServiceError)
	set(15, f.DownstreamConnectionTermination)
	set(16, f.UpstreamRetryLimitExceeded)
	set(17, f.StreamIdleTimeout)
	set(18, f.InvalidEnvoyRequestHeaders)
	set(19, f.DownstreamProtocolError)
	set(20, f.UpstreamMaxStreamDurationReached)
	set(21, f.ResponseFromCacheFilter)
	set(22, f.NoFilterConfigFound)
	set(23, f.DurationTimeout)
	set(24, f.UpstreamProtocolError)
	set(25, f.NoClusterFound)
	set(26, f.OverloadManager)
	set(27, f.DnsResolutionFailure)
	set(28, f.DownstreamRemoteReset)
	return m
}
