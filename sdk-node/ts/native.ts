/**
 * The native addon (generated loader in `native/`): picks the `.node` of this
 * platform, from beside it or from the platform package
 * (`@raftoral/client-linux-x64-gnu`).
 */
import native = require("../native/index.js");

export = native;
