/*
 * VK_LAYER_SBGC_dawn_limits: a Vulkan layer that reports Dawn's own maximum (16) for two device limits, so Dawn
 * has nothing to clamp and prints nothing.
 *
 * Why: Dawn clamps the WebGPU limits maxDynamic{Uniform,Storage}BuffersPerPipelineLayout to its internal constant
 * 16 (NormalizeLimits in src/dawn/native/Limits.cpp) and, whenever the Vulkan driver reports more, prints
 *   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 ...
 * straight to stderr (dawn::WarningLog: an fprintf, no toggle, no callback). Mesa's lavapipe reports 1000000
 * ("unlimited") for VkPhysicalDeviceLimits.maxDescriptorSet{Uniform,Storage}BuffersDynamic, RADV 500000. This layer
 * lowers those two Vulkan limits to 16 as Dawn reads them: the WebGPU limits Dawn exposes are 16 either way, and
 * nothing else changes. Only the physical-device property queries are intercepted; every device-level command goes
 * straight to the driver (the loader's dispatch table holds the driver's own function pointers).
 *
 * Built by scripts/setup.sh into .vulkan-layer/; enabled only for sbgc's processes by engine/dawn-limits-layer.ts.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

/* Dawn's kMaxDynamicUniformBuffersPerPipelineLayout and kMaxDynamicStorageBuffersPerPipelineLayout. */
#define DAWN_MAX_DYNAMIC_BUFFERS 16u

/* The head of an entry in one of the two registries below: its list link and its dispatch key. An instance and
   its physical devices share the loader's dispatch table pointer (the first word of each handle), so one key serves
   both. */
struct entry {
  struct entry *next;
  void *key;
};

/* What the next layer (or the loader's terminator) provides, per instance or per device. */
struct next_instance {
  struct entry entry; /* first: an entry pointer is a pointer to its struct */
  VkInstance instance;
  PFN_vkGetInstanceProcAddr get_proc_addr;
  PFN_vkDestroyInstance destroy;
  PFN_vkGetPhysicalDeviceProperties properties;
  PFN_vkGetPhysicalDeviceProperties2 properties2;
  PFN_vkGetPhysicalDeviceProperties2KHR properties2_khr;
};

struct next_device {
  struct entry entry;
  PFN_vkGetDeviceProcAddr get_proc_addr;
  PFN_vkDestroyDevice destroy;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *instances;
static struct entry *devices;

static void *dispatch_key(const void *handle) { return *(void *const *)handle; }

/* The entry with this key; on a miss NULL, or with newest_on_miss the list's newest entry. */
static struct entry *find_entry(struct entry *const *list, void *key, int newest_on_miss) {
  pthread_mutex_lock(&lock);
  struct entry *e = *list;
  while (e && e->key != key) e = e->next;
  if (!e && newest_on_miss) e = *list;
  pthread_mutex_unlock(&lock);
  return e;
}

static void add_entry(struct entry **list, struct entry *e, void *key) {
  e->key = key;
  pthread_mutex_lock(&lock);
  e->next = *list;
  *list = e;
  pthread_mutex_unlock(&lock);
}

/* Unlinks the entry of this handle and returns it (NULL on a miss or a NULL handle). */
static struct entry *remove_entry(struct entry **list, const void *handle) {
  if (!handle) return NULL;
  void *key = dispatch_key(handle);
  pthread_mutex_lock(&lock);
  struct entry **at = list;
  while (*at && (*at)->key != key) at = &(*at)->next;
  struct entry *e = *at;
  if (e) *at = e->next;
  pthread_mutex_unlock(&lock);
  return e;
}

static struct next_instance *find_instance(void *key) {
  /* a miss (never seen) falls back to the newest instance rather than crashing */
  return (struct next_instance *)find_entry(&instances, key, 1);
}

static struct next_device *find_device(void *key) { return (struct next_device *)find_entry(&devices, key, 0); }

static void clamp_limits(VkPhysicalDeviceLimits *limits) {
  if (limits->maxDescriptorSetUniformBuffersDynamic > DAWN_MAX_DYNAMIC_BUFFERS)
    limits->maxDescriptorSetUniformBuffersDynamic = DAWN_MAX_DYNAMIC_BUFFERS;
  if (limits->maxDescriptorSetStorageBuffersDynamic > DAWN_MAX_DYNAMIC_BUFFERS)
    limits->maxDescriptorSetStorageBuffersDynamic = DAWN_MAX_DYNAMIC_BUFFERS;
}

static VKAPI_ATTR void VKAPI_CALL get_properties(VkPhysicalDevice gpu, VkPhysicalDeviceProperties *props) {
  find_instance(dispatch_key(gpu))->properties(gpu, props);
  clamp_limits(&props->limits);
}

static VKAPI_ATTR void VKAPI_CALL get_properties2(VkPhysicalDevice gpu, VkPhysicalDeviceProperties2 *props) {
  find_instance(dispatch_key(gpu))->properties2(gpu, props);
  clamp_limits(&props->properties.limits);
}

static VKAPI_ATTR void VKAPI_CALL get_properties2_khr(VkPhysicalDevice gpu, VkPhysicalDeviceProperties2 *props) {
  find_instance(dispatch_key(gpu))->properties2_khr(gpu, props);
  clamp_limits(&props->properties.limits);
}

static VKAPI_ATTR VkResult VKAPI_CALL create_instance(const VkInstanceCreateInfo *info,
                                                      const VkAllocationCallbacks *allocator, VkInstance *out) {
  VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerInstanceCreateInfo *)link->pNext;
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_vkCreateInstance next_create = (PFN_vkCreateInstance)next_gipa(VK_NULL_HANDLE, "vkCreateInstance");
  struct next_instance *entry = calloc(1, sizeof *entry);
  if (!entry || !next_create) { free(entry); return VK_ERROR_INITIALIZATION_FAILED; }
  link->u.pLayerInfo = link->u.pLayerInfo->pNext; /* the next layer reads its own link */
  VkResult result = next_create(info, allocator, out);
  if (result != VK_SUCCESS) { free(entry); return result; }
  entry->instance = *out;
  entry->get_proc_addr = next_gipa;
  entry->destroy = (PFN_vkDestroyInstance)next_gipa(*out, "vkDestroyInstance");
  entry->properties = (PFN_vkGetPhysicalDeviceProperties)next_gipa(*out, "vkGetPhysicalDeviceProperties");
  entry->properties2 = (PFN_vkGetPhysicalDeviceProperties2)next_gipa(*out, "vkGetPhysicalDeviceProperties2");
  entry->properties2_khr = (PFN_vkGetPhysicalDeviceProperties2KHR)next_gipa(*out, "vkGetPhysicalDeviceProperties2KHR");
  add_entry(&instances, &entry->entry, dispatch_key(*out));
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL destroy_instance(VkInstance instance, const VkAllocationCallbacks *allocator) {
  struct next_instance *entry = (struct next_instance *)remove_entry(&instances, instance);
  if (entry) entry->destroy(instance, allocator);
  free(entry);
}

static VKAPI_ATTR VkResult VKAPI_CALL create_device(VkPhysicalDevice gpu, const VkDeviceCreateInfo *info,
                                                    const VkAllocationCallbacks *allocator, VkDevice *out) {
  VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerDeviceCreateInfo *)link->pNext;
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr next_gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  VkInstance instance = find_instance(dispatch_key(gpu))->instance;
  PFN_vkCreateDevice next_create = (PFN_vkCreateDevice)next_gipa(instance, "vkCreateDevice");
  struct next_device *entry = calloc(1, sizeof *entry);
  if (!entry || !next_create) { free(entry); return VK_ERROR_INITIALIZATION_FAILED; }
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  VkResult result = next_create(gpu, info, allocator, out);
  if (result != VK_SUCCESS) { free(entry); return result; }
  entry->get_proc_addr = next_gdpa;
  entry->destroy = (PFN_vkDestroyDevice)next_gdpa(*out, "vkDestroyDevice");
  add_entry(&devices, &entry->entry, dispatch_key(*out));
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL destroy_device(VkDevice device, const VkAllocationCallbacks *allocator) {
  struct next_device *entry = (struct next_device *)remove_entry(&devices, device);
  if (entry) entry->destroy(device, allocator);
  free(entry);
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL get_device_proc_addr(VkDevice device, const char *name) {
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)get_device_proc_addr;
  if (!strcmp(name, "vkDestroyDevice")) return (PFN_vkVoidFunction)destroy_device;
  struct next_device *d = find_device(dispatch_key(device));
  return d ? d->get_proc_addr(device, name) : NULL;
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL get_instance_proc_addr(VkInstance instance, const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)get_instance_proc_addr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)create_instance;
  if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)destroy_instance;
  if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)create_device;
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)get_device_proc_addr;
  if (!strcmp(name, "vkDestroyDevice")) return (PFN_vkVoidFunction)destroy_device;
  if (!instance) return NULL; /* the loader answers the other global commands from the manifest */
  struct next_instance *i = find_instance(dispatch_key(instance));
  if (!i) return NULL;
  /* Hook a query only where the next layer has it (Properties2KHR needs its instance extension). */
  if (!strcmp(name, "vkGetPhysicalDeviceProperties")) return i->properties ? (PFN_vkVoidFunction)get_properties : NULL;
  if (!strcmp(name, "vkGetPhysicalDeviceProperties2")) return i->properties2 ? (PFN_vkVoidFunction)get_properties2 : NULL;
  if (!strcmp(name, "vkGetPhysicalDeviceProperties2KHR"))
    return i->properties2_khr ? (PFN_vkVoidFunction)get_properties2_khr : NULL;
  return i->get_proc_addr(instance, name);
}

__attribute__((visibility("default"))) VKAPI_ATTR VkResult VKAPI_CALL
vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *version) {
  if (!version || version->sType != LAYER_NEGOTIATE_INTERFACE_STRUCT || version->loaderLayerInterfaceVersion < 2)
    return VK_ERROR_INITIALIZATION_FAILED;
  version->loaderLayerInterfaceVersion = 2;
  version->pfnGetInstanceProcAddr = get_instance_proc_addr;
  version->pfnGetDeviceProcAddr = get_device_proc_addr;
  version->pfnGetPhysicalDeviceProcAddr = NULL;
  return VK_SUCCESS;
}
