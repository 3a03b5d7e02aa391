//! Client-side request limit (`controller.kubeApiQps` / `kubeApiBurst`): a token bucket as a
//! tower layer on the kube client, outside kube's own stack (which keeps its retry on 429).
//!
//! Every request start takes one token; a long-lived watch takes one when it (re)connects.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// A token bucket: `rate` tokens per second, at most `burst` stored. Pure: time is passed in.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` is raised to at least 1 and `qps` to at least 1.
    pub fn new(qps: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(qps.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / self.rate).max(Duration::from_millis(1)))
        }
    }
}

/// Layer that limits the request rate of the wrapped service.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitLayer {
    qps: u32,
    burst: u32,
}

impl RateLimitLayer {
    /// `qps` sustained requests per second with bursts of `burst`; `qps == 0` disables the limit.
    pub fn new(qps: u32, burst: u32) -> Self {
        RateLimitLayer { qps, burst }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            bucket: (self.qps > 0).then(|| TokenBucket::new(self.qps, self.burst, Instant::now())),
            sleep: None,
            permit: false,
        }
    }
}

/// The rate-limited service (see [`RateLimitLayer`]).
pub struct RateLimit<S> {
    inner: S,
    bucket: Option<TokenBucket>,
    sleep: Option<Pin<Box<Sleep>>>,
    permit: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(bucket) = self.bucket.as_mut() {
            while !self.permit {
                if let Some(sleep) = self.sleep.as_mut() {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.sleep = None;
                }
                match bucket.try_take(Instant::now()) {
                    Ok(()) => self.permit = true,
                    Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.permit = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn bucket_allows_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait >= Duration::from_millis(99));
        assert_eq!(b.try_take(t0 + Duration::from_millis(100)), Ok(()));
        // Idle time refills up to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.try_take(later), Ok(()));
        }
        assert!(b.try_take(later).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn layer_delays_requests_beyond_the_burst() {
        let svc = tower::service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });
        let mut svc = RateLimitLayer::new(5, 2).layer(svc);
        let t0 = Instant::now();
        for i in 0..4u32 {
            let got = svc.ready().await.unwrap().call(i).await.unwrap();
            assert_eq!(got, i);
        }
        // Two from the burst, then two more at 5 per second.
        let elapsed = t0.elapsed();
        assert!(
            elapsed >= Duration::from_millis(399) && elapsed < Duration::from_millis(450),
            "{elapsed:?}"
        );
    }
}
