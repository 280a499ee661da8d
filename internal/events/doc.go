// Package events runs functions when something other than an HTTP request
// happens: asynchronous invocations with retries, dead letters and
// destinations; queue topics delivered in batches; schedules; and
// CloudEvents posted to the API. Everything it accepts is first stored in
// JetStream (see internal/store for the streams), so an accepted event
// survives a crash of Tern and is run at least once.
//
// The flow of an asynchronous event:
//
//	Submit ─► TERN_ASYNC tern.async.<fn> ─► async worker (pull consumer
//	async_<fn>, bounded concurrency) ─► dispatcher ─► success: ack
//	(+ onSuccess); failure: a delayed copy on tern.delay.<fn>... that the
//	NATS server moves back at its time; last failure or too old: TERN_DLQ
//	tern.dlq.<fn> (+ onFailure).
//
// Schedules and CloudEvents become asynchronous events (with message ids
// that JetStream de-duplicates, so a tick fires once across servers).
// Queue topics are streams of their own with one durable consumer per
// subscribed function; a batch is acknowledged message by message only
// after the function succeeded with it.
//
// Settling (settle.go): a final ack waits for the server's confirmation and
// is sent again while none comes, because a lost ack hands the message out
// again after AckWait and the function runs twice; every ack, nak or
// progress signal that fails is logged and counted (SettleFailures).
package events
