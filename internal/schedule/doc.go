// Package schedule parses the schedule expressions of function triggers
// and computes their ticks.
//
// Three forms are accepted:
//
//   - Standard 5-field cron, "*/5 * * * *" (minute hour day-of-month month
//     day-of-week, with names such as MON and JAN), and the descriptors
//     @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly.
//   - AWS EventBridge cron, "cron(0 12 ? * MON-FRI *)": six fields, the last
//     a year (1970-2199); exactly one of day-of-month and day-of-week is "?";
//     day-of-week numbers run 1-7 with 1 = SUN. L, W and # are not supported.
//   - "rate(N unit)" with unit minute(s), hour(s), day(s) or, as a Tern
//     extension, second(s), N a whole number from 1: the shortest rate is
//     rate(1 second), the scheduler's resolution (EventBridge's is
//     rate(1 minute)).
//
// Parse refuses a cron schedule that never fires: no date matches its day
// of the month and month ("0 0 30 2 *", "cron(0 0 31 2 ? *)"), or none in
// the years of its year field ("cron(0 0 29 2 ? 2027)"). "0 0 29 2 *" is
// valid: it fires in leap years. Whether a schedule is accepted does not
// depend on the clock: an AWS schedule whose years are past parses, and
// Next answers the zero Time for it (the manifest refuses it at deploy).
//
// Cron schedules are evaluated in the schedule's time zone (UTC unless one
// is given): a tick is an instant whose wall clock there matches the
// fields, so "0 9 * * *" in Europe/Paris fires at 09:00 Paris time on both
// sides of a daylight-saving change. A wall-clock time that a change skips
// (02:30 on the spring-forward night) is no tick that day; one that occurs
// twice (01:30 on the fall-back night in New York) is two ticks. The cron
// library (robfig/cron) parses the fields and searches wall-clock time in
// UTC only; this package maps wall clock to instants one UTC-offset period
// at a time, because the library's own zone handling can loop forever
// where a zone skips a whole day.
//
// Rate schedules have no zone: their ticks are the instants that are whole
// multiples of the period since the Unix epoch, so every server computes
// the same ticks without coordination. A day is 24 hours.
//
// Work is bounded. Next searches at most eleven years ahead (a cron
// schedule that fires at all fires at least every eight years), plus one
// jump per year of an AWS year field, and returns the zero Time when
// nothing fires. Last does not walk tick by tick: it finds a window ending
// at notAfter that holds a tick by doubling its length from a minute, then
// bisects that window, so it calls Next O(log((notAfter-since)/minute))
// times (about 70 calls even when since is the zero Time). Its answer is
// exact over the whole range (since, notAfter]: there is no look-back
// cut-off. Rate schedules use arithmetic for both.
package schedule
