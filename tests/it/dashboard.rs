//! The dashboard as served: headers, assets, CSP. (The browser test is tests/browser.)
