// The steps-N workload for Restate: one durable step (ctx.run) per checkpoint.
// The SDK expects Node 22; Node 20 lacks Promise.withResolvers.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const restate = await import("@restatedev/restate-sdk");

const steps = restate.service({
  name: "steps",
  handlers: {
    run: async (ctx, n) => {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        sum += await ctx.run(`step-${i}`, async () => i + 1);
      }
      return sum;
    },
  },
});

restate.endpoint().bind(steps).listen(Number(process.env.PORT || 9080));
