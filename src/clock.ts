// Epoch milliseconds with sub-millisecond resolution, from the monotonic clock: comparable across
// processes on one machine (the benchmark joins the controller's stage times with its own).
const timeOrigin = performance.timeOrigin; // its getter is not free, and this runs per event

export const preciseNow = (): number => timeOrigin + performance.now();
