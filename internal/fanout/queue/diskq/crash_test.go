package diskq

// crash leaves l the way kill -9 would: files closed without a last
// cursor write or fsync, and its timer stopped (so goleak sees no
// goroutine left behind).
func (l *Log) crash() {
	l.mu.Lock()
	l.closed = true
	l.closeReader()
	l.w.Close()
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
}
