package elasticsearch

// allSucceeded reports how many items a _bulk response holds when every
// one has a 2xx status; ok is false when one does not, or when the body is
// anything this scan does not expect (then the caller decodes it fully).
// It reads the statuses themselves, not the "errors" flag. The caller decodes data in
// full when ok is false; a body that is not JSON gives ok false or a count
// the caller compares with the documents it sent.
func allSucceeded(data []byte) (n int, ok bool) {
	const (
		topDepth    = 1 // {"took":..,"errors":..,"items":[
		itemsDepth  = 2 // [ {item}, ... ]
		itemDepth   = 3 // {"create": {...}}
		actionDepth = 4 // {"_index":..,"status":201}
	)
	depth, inItems, statuses := 0, false, 0
	var key []byte // the last object key read, while its value follows
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '"':
			j := i + 1
			for j < len(data) && data[j] != '"' {
				if data[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(data) {
				return 0, false
			}
			s := data[i+1 : j]
			i = j
			k := i + 1
			for k < len(data) && (data[k] == ' ' || data[k] == '\n' || data[k] == '\t' || data[k] == '\r') {
				k++
			}
			if k < len(data) && data[k] == ':' {
				key = s
				i = k
			} else {
				key = nil
			}
		case '{', '[':
			if c == '[' && depth == topDepth && string(key) == "items" {
				inItems = true
			}
			depth++
			if inItems && depth == itemDepth {
				n++
			}
			key = nil
		case '}', ']':
			depth--
			if depth == topDepth {
				inItems = false
			}
			key = nil
		case ',':
			key = nil
		default:
			if inItems && depth == actionDepth && string(key) == "status" && c >= '0' && c <= '9' {
				if c != '2' {
					return 0, false
				}
				statuses++
				for i+1 < len(data) && data[i+1] >= '0' && data[i+1] <= '9' {
					i++
				}
				key = nil
			}
		}
	}
	if depth != 0 || statuses != n {
		return 0, false
	}
	return n, true
}
