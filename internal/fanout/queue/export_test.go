package queue

// crash stops q the way kill -9 would, as far as its files are concerned:
// workers stop, nothing in memory is persisted, nothing more is committed.
func (q *Queue) crash() {
	q.mu.Lock()
	q.closing, q.stopped = true, true
	q.cond.Broadcast()
	q.mu.Unlock()
	q.cancelRun()
	q.workers.Wait()
	if q.disk != nil {
		q.disk.Close()
	}
}
