// The package's "main" build is not importable as ESM from Node; its ESM build has no typings of its own.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
